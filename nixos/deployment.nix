# pinkie.deployment: how `pinkie deploy` treats this host. The deploy code
# reads these attributes from plain nixosConfigurations with
#   nix eval --json .#nixosConfigurations --apply 'cs: builtins.mapAttrs (n: c: c.config.pinkie.deployment or {}) cs'
# so they must stay plain data. Their defaults live in lib.nix
# (deploymentDefaults), which the fleet export and the tests share.
#
# pinkie.fleet: what the fleet export (pinkie fleet sync) reports besides
# what it finds by itself.
{ config, lib, ... }:
let
  pinkieLib = import ./lib.nix;
  defaults = pinkieLib.deploymentDefaults;
  inherit (lib) mkOption types;
in
{
  options.pinkie.deployment = {
    tags = mkOption {
      type = types.listOf types.str;
      default = defaults.tags;
      example = [ "web" "eu" ];
      description = ''
        Labels to select this host by: `pinkie deploy @web`, `@web&@eu`,
        `!@db`. Letters, digits, `-`, `_` and `.`.
      '';
    };
    buildOn = mkOption {
      type = types.nullOr types.str;
      default = defaults.buildOn;
      example = "target";
      description = ''
        Where this host's system is built: `"local"` (in the process that
        runs `pinkie deploy`), `"target"` (by this host's own agent) or the
        name of another host whose agent has the builder role
        (`services.pinkie.agent.builder.enable`). `null` leaves it to the
        fleet default (`pinkie deploy --build-on`, else local).
        `pinkie deploy --build-on` overrides it.
      '';
    };
    targetHost = mkOption {
      type = types.nullOr types.str;
      default = defaults.targetHost;
      example = "203.0.113.7";
      description = ''
        How to reach this host when its name does not resolve (informational:
        pinkie's agents connect out to the hub, so deploys need no SSH).
        `null`: the host's name.
      '';
    };
    requireExplicit = mkOption {
      type = types.bool;
      default = defaults.requireExplicit;
      description = ''
        Leave this host out of `pinkie deploy all` and of globs; it is only
        deployed when named (e.g. the hub itself, a router).
      '';
    };
    goal = mkOption {
      type = types.enum pinkieLib.goals;
      default = defaults.goal;
      description = ''
        The action `switch-to-configuration` runs: `switch`, `boot` (next
        boot), `test` (until reboot) or `dry-activate`.
      '';
    };
    healthChecks = mkOption {
      type = types.listOf types.str;
      default = defaults.healthChecks;
      example = [ "systemctl is-active nginx" "curl -fsS http://127.0.0.1/healthz" ];
      description = ''
        Shell commands the agent runs (with `/bin/sh -c`, each with a
        timeout) after activating this host's new system; a non-zero exit
        rolls the host back to its previous generation and reports the deploy
        as `rolledback`. They run in the agent's sandbox, with the new
        system's `/run/current-system/sw/bin` on PATH.
      '';
    };
    rollbackTimeout = mkOption {
      type = types.nullOr types.int;
      default = defaults.rollbackTimeout;
      example = 30;
      description = ''
        Magic rollback: seconds the agent has, after switching this host
        (goals `switch` and `test`) and passing its health checks, to reach
        the hub again over its link. If the new configuration cut it off
        (firewall, network, DNS, certificates), it restores the previous
        generation on its own and reports the deploy `rolledback`, once the
        link is back. 1 to 86400; `null`: the agent's default
        (`services.pinkie.agent.deploy.rollbackTimeout`, 90 s).
      '';
    };
  };

  options.pinkie.fleet.services = mkOption {
    type = types.listOf types.str;
    default = [ ];
    example = [ "home-assistant" "backup.timer" ];
    description = ''
      systemd units this host should run, reported by the fleet export
      (`pinkie fleet sync`) so the inventory can alert when one is missing.
      Units of well-known services the host enables (nginx, caddy, httpd,
      postgresql, mysql, sshd, pinkie's own) are reported without being
      listed. A name without a unit suffix means `.service`.
    '';
  };

  config.assertions = map (message: { assertion = false; inherit message; })
    (pinkieLib.deploymentProblems config.pinkie.deployment);
}
