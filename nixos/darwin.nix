# services.pinkie.agent on nix-darwin: the agent as a launchd daemon, for
# monitoring (heartbeat, profile, fs, path, smart where smartctl exists).
# Deploys of nix-darwin hosts are not supported: the activator drives
# NixOS's switch-to-configuration, which nix-darwin does not have.
#
# launchd has no LoadCredential: the daemon runs as root and reads the seed
# file itself. AbandonProcessGroup plays the part of systemd's
# KillMode=process: when nix-darwin's activation reloads the daemon's plist,
# launchd stops the agent but not the processes it started.
{ config, lib, pkgs, ... }:
let
  cfg = config.services.pinkie.agent;
  pinkieLib = import ./lib.nix;
  json = pkgs.formats.json { };
  inherit (lib) mkOption mkEnableOption mkIf types;

  configFile =
    if cfg.producers == { } then null
    else json.generate "pinkie-agent.json" (pinkieLib.agentConfig cfg.producers);
  args = pinkieLib.agentArgs {
    inherit (cfg) hubs dataDir nkeyFile heartbeat outboxMaxBytes syncAlways logLevel logFormat extraArgs;
    name = if cfg.name == null then "" else cfg.name;
    inherit configFile;
    activation = null;
    builder = false;
    pushTo = null;
    substituter = null;
    checkSigs = true;
    deployFlake = null;
  };
in
{
  imports = [ ./common.nix ];

  options.services.pinkie.agent = {
    enable = mkEnableOption "the pinkie agent (monitoring; deploys of nix-darwin hosts are not supported)";
    name = mkOption {
      type = types.nullOr types.str;
      default = config.networking.hostName;
      defaultText = lib.literalExpression "config.networking.hostName";
      description = "This host's name in the fleet (its key in the hub's auth file).";
    };
    hubs = mkOption { type = types.listOf types.str; default = [ ]; example = [ "nats-leaf://hub.lan:7422" ]; description = "The hub's leaf URLs."; };
    nkeyFile = mkOption { type = types.nullOr types.str; default = null; example = "/var/lib/pinkie-agent/agent.nk"; description = "This host's nkey seed file, outside the Nix store."; };
    dataDir = mkOption { type = types.str; default = "/var/lib/pinkie-agent"; description = "The OUTBOX and producer state."; };
    producers = mkOption {
      type = types.attrsOf (types.submodule {
        freeformType = json.type;
        options = {
          enable = mkOption { type = types.nullOr types.bool; default = null; description = "Run this producer (null: its default)."; };
          interval = mkOption { type = types.nullOr types.str; default = null; description = "How often it collects (null: its default)."; };
        };
      });
      default = { };
      description = "Producers and their options, as on NixOS.";
    };
    heartbeat = mkOption { type = types.str; default = "30s"; description = "Heartbeat interval."; };
    outboxMaxBytes = mkOption { type = types.ints.positive; default = 1024 * 1024 * 1024; description = "OUTBOX size limit."; };
    syncAlways = mkOption { type = types.bool; default = false; description = "fsync every event."; };
    logLevel = mkOption { type = types.enum [ "debug" "info" "warn" "error" ]; default = "info"; description = "Log level."; };
    logFormat = mkOption { type = types.enum [ "text" "json" ]; default = "text"; description = "Log format."; };
    logFile = mkOption { type = types.str; default = "/var/log/pinkie-agent.log"; description = "Where launchd writes the agent's output."; };
    extraPackages = mkOption { type = types.listOf types.package; default = [ ]; description = "Put on the agent's PATH."; };
    extraArgs = mkOption { type = types.listOf types.str; default = [ ]; description = "Extra arguments for `pinkie-agent` (pinkie agent's flags)."; };
  };

  config = mkIf cfg.enable {
    assertions = map (message: { assertion = false; inherit message; })
      (lib.optional (cfg.name == null)
        "services.pinkie.agent.name must be set on nix-darwin when networking.hostName is not."
      ++ lib.optionals (cfg.name != null) (pinkieLib.agentProblems {
        inherit (cfg) name hubs nkeyFile dataDir producers;
      }));

    environment.systemPackages = [ config.services.pinkie.package ];

    system.activationScripts.postActivation.text = lib.mkAfter ''
      mkdir -p ${lib.escapeShellArg cfg.dataDir}
      chmod 0700 ${lib.escapeShellArg cfg.dataDir}
    '';

    launchd.daemons.pinkie-agent.serviceConfig = {
      ProgramArguments = [ (lib.getExe' config.services.pinkie.package "pinkie-agent") ] ++ args;
      RunAtLoad = true;
      KeepAlive = true;
      ThrottleInterval = 5;
      AbandonProcessGroup = true;
      StandardOutPath = cfg.logFile;
      StandardErrorPath = cfg.logFile;
      EnvironmentVariables = {
        NIX_REMOTE = "daemon";
        PATH = lib.makeBinPath ([ config.services.pinkie.package config.nix.package pkgs.smartmontools ] ++ cfg.extraPackages)
          + ":/run/current-system/sw/bin:/usr/bin:/bin:/usr/sbin:/sbin";
      };
    };
  };
}
