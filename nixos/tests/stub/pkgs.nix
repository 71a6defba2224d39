# A stand-in for the few nixpkgs packages and builders module.nix and package.nix touch. Every
# "derivation" is a plain attrset with a fake store path; nothing is built or copied.
{ lib }:
let
  fakeDrv = name: extra: {
    type = "derivation";
    inherit name;
    outPath = "/nix/store/${builtins.substring 0 32 (builtins.hashString "sha256" name)}-${name}";
  } // extra;
  self = {
    inherit lib;
    docker = fakeDrv "docker-28.2.2" { };
    docker-compose = fakeDrv "docker-compose-2.36.2" { };
    bashInteractive = fakeDrv "bash-interactive-5.2" { };
    coreutils = fakeDrv "coreutils-9.5" { };
    systemd = fakeDrv "systemd-257" { };

    # buildGoModule returns its arguments, so tests can check what package.nix asks for without
    # touching `src`.
    buildGoModule = args: fakeDrv "${args.pname}-${args.version}" { goModuleArgs = args; };

    callPackage = fn: overrides:
      let f = if builtins.isFunction fn then fn else import fn; in
      f (builtins.intersectAttrs (builtins.functionArgs f) (self // overrides));

    writeShellScript = name: text: fakeDrv name { inherit text; executable = true; };

    formats.toml = { }: {
      type = lib.types.attrsOf lib.types.anything;
      # The generated file carries the value it was made from, so tests can read the TOML
      # structure back with builtins.toJSON.
      generate = name: value: fakeDrv name { inherit value; format = "toml"; };
    };
  };
in
self
