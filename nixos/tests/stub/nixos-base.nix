# The NixOS options module.nix writes to or reads, declared loosely (attrsets of anything) so
# the stub evaluation can see exactly what the module defines.
{ lib, pkgs, ... }:
let
  inherit (lib) mkOption types;
  loose = default: mkOption { type = types.anything; inherit default; };
in
{
  options = {
    assertions = mkOption { type = types.listOf types.anything; default = [ ]; };
    warnings = mkOption { type = types.listOf types.str; default = [ ]; };
    systemd.services = mkOption { type = types.attrsOf types.anything; default = { }; };
    users.users = mkOption { type = types.attrsOf types.anything; default = { }; };
    users.groups = mkOption { type = types.attrsOf types.anything; default = { }; };
    security.wrappers = mkOption { type = types.attrsOf types.anything; default = { }; };
    security.wrapperDir = mkOption { type = types.path; default = "/run/wrappers/bin"; };
    boot.kernelParams = mkOption { type = types.listOf types.str; default = [ ]; };
    fileSystems = mkOption { type = types.attrsOf types.anything; default = { }; };
    environment.etc = mkOption { type = types.attrsOf types.anything; default = { }; };
    environment.systemPackages = mkOption { type = types.listOf types.package; default = [ ]; };
    environment.shells = mkOption { type = types.listOf types.anything; default = [ ]; };
    systemd.package = mkOption { type = types.package; default = pkgs.systemd; };
    virtualisation = loose { };
  };
}
