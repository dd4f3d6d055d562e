# The nix-darwin options pinkie's darwin module (../darwin.nix) sets or
# reads, declared with nix-darwin's types, for eval.nix: launchd daemons
# (modules/launchd/launchd.nix: serviceConfig is a submodule of the
# launchd.plist keys), activation scripts, packages.
{ lib, ... }:
let
  inherit (lib) mkOption types;
  fake = name: { type = "derivation"; inherit name; outPath = "/nix/store/00000000000000000000000000000000-${name}"; };
  plist = {
    options = {
      Label = mkOption { type = types.nullOr types.str; default = null; };
      Program = mkOption { type = types.nullOr types.path; default = null; };
      ProgramArguments = mkOption { type = types.nullOr (types.listOf types.str); default = null; };
      RunAtLoad = mkOption { type = types.nullOr types.bool; default = null; };
      KeepAlive = mkOption { type = types.nullOr (types.either types.bool (types.attrsOf types.anything)); default = null; };
      ThrottleInterval = mkOption { type = types.nullOr types.int; default = null; };
      AbandonProcessGroup = mkOption { type = types.nullOr types.bool; default = null; };
      StandardOutPath = mkOption { type = types.nullOr types.path; default = null; };
      StandardErrorPath = mkOption { type = types.nullOr types.path; default = null; };
      EnvironmentVariables = mkOption { type = types.nullOr (types.attrsOf types.str); default = null; };
      UserName = mkOption { type = types.nullOr types.str; default = null; };
    };
  };
in
{
  options = {
    assertions = mkOption { type = types.listOf types.unspecified; default = [ ]; };
    warnings = mkOption { type = types.listOf types.str; default = [ ]; };
    networking.hostName = mkOption { type = types.nullOr types.str; default = null; };
    nix.package = mkOption { type = types.package; default = fake "nix"; };
    environment.systemPackages = mkOption { type = types.listOf types.package; default = [ ]; };
    system.activationScripts = mkOption {
      type = types.attrsOf (types.submodule { options.text = mkOption { type = types.lines; default = ""; }; });
      default = { };
    };
    launchd.daemons = mkOption {
      type = types.attrsOf (types.submodule {
        options = {
          serviceConfig = mkOption { type = types.submodule plist; default = { }; };
          command = mkOption { type = types.either types.str types.path; default = ""; };
        };
      });
      default = { };
    };
  };
}
