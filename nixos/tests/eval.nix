# Evaluates nixos/module.nix with the stub lib and pkgs, like a NixOS system would, and fails
# with the module's assertion messages when any is false.
#   nix-instantiate --eval --strict --json --store dummy:// -E \
#     'import nixos/tests/eval.nix { modules = [ { services.dockwatch.enable = true; } ]; }'
{ modules }:
let
  lib = import ./stub/lib.nix;
  pkgs = import ./stub/pkgs.nix { inherit lib; };
  result = lib.evalModules {
    modules = [ ./stub/nixos-base.nix ../module.nix ] ++ modules;
    specialArgs = { inherit pkgs; };
  };
  failed = map (a: a.message) (lib.filter (a: !a.assertion) result.config.assertions);
in
if failed != [ ] then
  throw "\nFailed assertions:\n${lib.concatMapStringsSep "\n" (m: "- ${m}") failed}"
else
  # Force every value, as building a real system would, so a bad option value fails here even
  # when the test only looks at part of the result.
  builtins.deepSeq result.config (result.config // { _pkgs = pkgs; })
