# A small stand-in for nixpkgs' lib, enough to evaluate nixos/module.nix without nixpkgs: the
# option helpers, the types the module uses, mkIf/mkMerge/mkOverride and an evalModules that
# merges option declarations and definitions, checks types and reports errors in the wording
# of the real module system. Written for dockwatch's tests; it is not a general implementation.
let
  b = builtins;
  lib = rec {
    inherit (b) attrNames attrValues concatMap concatStringsSep elem filter head tail length
      isAttrs isList isString isBool isInt isFunction isPath listToAttrs mapAttrs toJSON all any;
    foldl' = b.foldl';
    id = x: x;
    optional = c: x: if c then [ x ] else [ ];
    optionals = c: xs: if c then xs else [ ];
    optionalString = c: s: if c then s else "";
    optionalAttrs = c: a: if c then a else { };
    concatMapStringsSep = sep: f: xs: concatStringsSep sep (map f xs);
    nameValuePair = name: value: { inherit name value; };
    genAttrs = names: f: listToAttrs (map (n: nameValuePair n (f n)) names);
    filterAttrs = pred: set: listToAttrs (concatMap (n: optional (pred n set.${n}) (nameValuePair n set.${n})) (attrNames set));
    hasPrefix = p: s: b.substring 0 (b.stringLength p) s == p;
    unique = foldl' (acc: x: if elem x acc then acc else acc ++ [ x ]) [ ];
    escapeShellArg = s: "'${b.replaceStrings [ "'" ] [ "'\\''" ] (toString s)}'";
    escapeShellArgs = xs: concatStringsSep " " (map escapeShellArg xs);
    recursiveUpdate = lhs: rhs:
      lhs // mapAttrs (n: v: if isAttrs v && isAttrs (lhs.${n} or null) then recursiveUpdate lhs.${n} v else v) rhs;
    fakeHash = "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    licenses.asl20 = { shortName = "asl20"; };
    literalExpression = text: { _type = "literalExpression"; inherit text; };
    isDerivation = x: isAttrs x && (x.type or "") == "derivation";

    # ---- properties ------------------------------------------------------------------------
    mkIf = condition: content: { _type = "if"; inherit condition content; };
    mkMerge = contents: { _type = "merge"; inherit contents; };
    mkOverride = priority: content: { _type = "override"; inherit priority content; };
    mkOptionDefault = mkOverride 1500;
    mkDefault = mkOverride 1000;
    mkForce = mkOverride 50;

    # ---- options ---------------------------------------------------------------------------
    mkOption = attrs: attrs // { _type = "option"; };
    mkEnableOption = name: mkOption {
      type = types.bool;
      default = false;
      description = "Whether to enable ${name}.";
    };
    isOption = v: isAttrs v && (v._type or "") == "option";
    showLoc = concatStringsSep ".";

    # Short rendering of a value for error messages.
    showValue = v:
      if isDerivation v then "<derivation ${v.name or "?"}>"
      else if isFunction v then "<function>"
      else if isPath v then toString v
      else b.toJSON v;

    # Split a definition into attrset pieces, pushing mkIf/mkOverride into every attribute
    # without evaluating a condition (so `config = mkIf cfg.enable {...}` does not recurse).
    pushDown = v:
      let t = if isAttrs v then v._type or "" else ""; in
      if t == "merge" then concatMap pushDown v.contents
      else if t == "if" then map (mapAttrs (_: x: mkIf v.condition x)) (pushDown v.content)
      else if t == "override" then map (mapAttrs (_: x: mkOverride v.priority x)) (pushDown v.content)
      else [ v ];

    # Evaluate the properties of a leaf definition into [ { prio; value; } ].
    discharge = loc: prio: v:
      let t = if isAttrs v then v._type or "" else ""; in
      if t == "merge" then concatMap (discharge loc prio) v.contents
      else if t == "if" then
        (if !isBool v.condition
         then throw "mkIf called with a non-Boolean condition at `${showLoc loc}'"
         else if v.condition then discharge loc prio v.content else [ ])
      else if t == "override" then discharge loc v.priority v.content
      else [ { inherit prio; value = v; } ];

    # Merge the definitions [ { file; value; } ] of one value of type `type` at `loc`.
    mergeDefinitions = loc: type: defs:
      let
        all' = concatMap (d: map (p: p // { inherit (d) file; }) (discharge loc 100 d.value)) defs;
        best = foldl' (m: d: if d.prio < m then d.prio else m) 9999 all';
        active = filter (d: d.prio == best) all';
        bad = filter (d: !(type.check d.value)) active;
      in
      if active == [ ] then throw "The option `${showLoc loc}' was accessed but has no value defined. Try setting the option."
      else if bad != [ ] then
        throw ("A definition for option `${showLoc loc}' is not of type `${type.description}'. Definition values:"
          + concatMapStringsSep "" (d: "\n- In `${d.file}': ${showValue d.value}") bad)
      else type.merge loc (map (d: { inherit (d) file value; }) active);

    mergeEqual = loc: defs:
      let first = head defs; in
      if all (d: d.value == first.value) defs then first.value
      else throw ("The option `${showLoc loc}' has conflicting definition values:"
        + concatMapStringsSep "" (d: "\n- In `${d.file}': ${showValue d.value}") defs);

    # Merge attrset definitions name by name with `merge loc defs` for each name.
    mergeAttrsBy = loc: defs: mergeOne:
      let
        pieces = concatMap (d: map (value: { inherit (d) file; inherit value; }) (pushDown d.value)) defs;
        names = unique (concatMap (p: attrNames p.value) pieces);
      in
      genAttrs names (n: mergeOne (loc ++ [ n ]) (concatMap (p: optional (p.value ? ${n}) { inherit (p) file; value = p.value.${n}; }) pieces));

    # ---- types -----------------------------------------------------------------------------
    mkOptionType = { name, description ? name, check ? (_: true), merge ? mergeEqual, nestedTypes ? { } }:
      { _type = "option-type"; inherit name description check merge nestedTypes; };

    types = rec {
      bool = mkOptionType { name = "bool"; description = "boolean"; check = isBool; };
      int = mkOptionType { name = "int"; description = "signed integer"; check = isInt; };
      port = mkOptionType { name = "port"; description = "16 bit unsigned integer; between 0 and 65535 (both inclusive)"; check = v: isInt v && v >= 0 && v <= 65535; };
      str = mkOptionType { name = "str"; description = "string"; check = isString; };
      lines = mkOptionType {
        name = "lines"; description = "strings concatenated with \"\\n\""; check = isString;
        merge = _: defs: concatMapStringsSep "\n" (d: d.value) defs;
      };
      path = mkOptionType {
        name = "path"; description = "absolute path";
        check = v: isPath v || (isString v && hasPrefix "/" v) || isDerivation v;
      };
      package = mkOptionType {
        name = "package"; description = "package";
        check = v: isDerivation v || (isString v && hasPrefix "/nix/store/" v);
      };
      enum = values: mkOptionType {
        name = "enum";
        description = "one of ${concatMapStringsSep ", " (v: b.toJSON v) values}";
        check = v: elem v values;
      };
      listOf = elemType: mkOptionType {
        name = "listOf"; description = "list of ${elemType.description}";
        check = v: isList v && all elemType.check v;
        merge = _: defs: concatMap (d: d.value) defs;
        nestedTypes.elemType = elemType;
      };
      attrsOf = elemType: mkOptionType {
        name = "attrsOf"; description = "attribute set of ${elemType.description}";
        check = isAttrs;
        merge = loc: defs: mergeAttrsBy loc defs (l: ds: mergeDefinitions l elemType ds);
        nestedTypes.elemType = elemType;
      };
      nullOr = elemType: mkOptionType {
        name = "nullOr"; description = "null or ${elemType.description}";
        check = v: v == null || elemType.check v;
        merge = loc: defs:
          let nulls = filter (d: d.value == null) defs; in
          if nulls == [ ] then elemType.merge loc defs
          else if length nulls == length defs then null
          else throw "The option `${showLoc loc}' is defined both null and not null.";
        nestedTypes.elemType = elemType;
      };
      # Anything: attrsets merge recursively, lists concatenate, other values must agree.
      anything = mkOptionType {
        name = "anything"; description = "anything";
        merge = loc: defs:
          let values = map (d: d.value) defs; in
          if all (v: isAttrs v && !isDerivation v) values then mergeAttrsBy loc defs (l: ds: mergeDefinitions l anything ds)
          else if all isList values then concatMap id values
          else mergeEqual loc defs;
      };
      submodule = module: mkOptionType {
        name = "submodule"; description = "submodule";
        check = v: isAttrs v || isFunction v;
        merge = loc: defs: (evalModules {
          modules = [ module ] ++ map (d: { _file = d.file; config = d.value; }) defs;
          specialArgs = { name = b.elemAt loc (length loc - 1); };
          prefix = loc;
        }).config;
      };
    };

    # ---- evalModules -----------------------------------------------------------------------
    evalModules = { modules, specialArgs ? { }, prefix ? [ ] }:
      let
        args = specialArgs // { inherit lib config options; };
        load = file: m:
          let
            v = if isPath m then load (toString m) (import m)
                else if isFunction m then m args
                else m;
            structured = v ? options || v ? config || v ? imports;
          in
          if isPath m then v
          else [ {
            _file = v._file or file;
            options = if structured then v.options or { } else { };
            config = if structured then v.config or { } else removeAttrs v [ "_file" ];
          } ] ++ concatMap (i: load (toString i) i) (if structured then v.imports or [ ] else [ ]);
        loaded = concatMap (m: load "<unknown-file>" m) modules;

        mergeDecls = loc: a: c:
          if isOption a || isOption c then throw "The option `${showLoc loc}' is declared twice."
          else a // mapAttrs (n: v: if a ? ${n} then mergeDecls (loc ++ [ n ]) a.${n} v else v) c;
        options = foldl' (acc: m: mergeDecls prefix acc m.options) { } loaded;

        evalTree = loc: opts: defs:
          if isOption opts then
            mergeDefinitions loc opts.type (defs ++ optional (opts ? default) { file = "default"; value = mkOptionDefault opts.default; })
          else
            let
              pieces = concatMap (d: map (value: { inherit (d) file; inherit value; }) (pushDown d.value)) defs;
              undeclared = concatMap (p: map (n: { inherit n; inherit (p) file; }) (filter (n: !(opts ? ${n})) (attrNames p.value))) pieces;
              tree = mapAttrs (n: sub: evalTree (loc ++ [ n ]) sub
                (concatMap (p: optional (p.value ? ${n}) { inherit (p) file; value = p.value.${n}; }) pieces)) opts;
            in
            if undeclared != [ ] then
              let u = head undeclared; in
              throw "The option `${showLoc (loc ++ [ u.n ])}' does not exist. Definition in `${u.file}'."
            else tree;
        config = evalTree prefix options (map (m: { file = m._file; value = m.config; }) loaded);
      in
      { inherit config options; };
  };
in
lib
