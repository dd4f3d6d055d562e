# services.pinkie.agent: the agent on every host. It buffers this host's
# events in its own JetStream (a leaf node of the hub), runs the producers,
# activates deploys for this host and, with the builder role, builds other
# hosts' systems.
#
# Surviving its own deploys. A deploy that changes this unit must not kill
# the agent performing it:
#   - restartIfChanged = false: switch-to-configuration does not stop or
#     restart the unit when its definition changes; the new definition takes
#     effect the next time the agent starts (the agent publishes the deploy's
#     outcome first, then may exit to be restarted by Restart=always).
#   - X-StopOnRemoval = false: a configuration without the agent does not
#     stop it in the middle of the deploy that removes it.
#   - switch-to-configuration itself runs in a transient unit (systemd-run,
#     --activation systemd), a cgroup of its own that PID 1 starts with full
#     privileges: it outlives the agent, and the agent's sandbox below does
#     not constrain it.
#   - KillMode = process: if the agent is stopped anyway (shutdown, a manual
#     restart) while it builds or fetches, only the agent gets SIGTERM; its
#     children (nix, the systemd-run client) finish instead of dying with it,
#     as in the cachix-agent module. A deploy interrupted by the agent's death
#     is reported as failed when the agent comes back.
#
# Privilege. Activation needs uid 0 (to set /nix/var/nix/profiles/system
# and to ask PID 1 for the transient unit over its private socket), but not
# root's capabilities: the agent runs as root with a bounding set of only
# what its producers need (CAP_SYS_RAWIO and CAP_SYS_ADMIN for SMART on SATA
# and NVMe drives, CAP_DAC_READ_SEARCH to open the drives read-only and to
# measure directories of other users, CAP_NET_ADMIN to read WireGuard
# peers), a read-only file system except its state, cache and the system
# profiles, and the Nix store through nix-daemon (NIX_REMOTE=daemon). With
# deploy.enable = false it runs as a DynamicUser with the same capabilities
# as ambient ones.
{ config, lib, pkgs, ... }:
let
  cfg = config.services.pinkie.agent;
  hub = config.services.pinkie.hub;
  pinkieLib = import ./lib.nix;
  json = pkgs.formats.json { };
  inherit (lib) mkOption mkEnableOption mkIf types;

  # The local hub's leaf URL, for an agent on the hub's own host.
  localHubURL =
    let
      a = pinkieLib.splitAddress hub.listen.leaf;
      host = if a == null || lib.elem a.host [ "" "0.0.0.0" "::" ] then "127.0.0.1"
        else if lib.hasInfix ":" a.host then "[${a.host}]" else a.host;
    in "nats-leaf://${host}:${toString (if a == null then 7422 else a.port)}";

  configFile =
    if cfg.producers == { } then null
    else json.generate "pinkie-agent.json" (pinkieLib.agentConfig cfg.producers);

  smartOn = (cfg.producers.smart.enable or null) != false;
  guestsOn = cfg.shell.enable && cfg.shell.guests;
  wireguardOn = (config.networking.wireguard.enable or false)
    || (config.networking.wg-quick.interfaces or { }) != { };
  capabilities = lib.unique (
    lib.optionals smartOn [ "CAP_SYS_RAWIO" "CAP_SYS_ADMIN" ]
    ++ [ "CAP_DAC_READ_SEARCH" ]
    ++ lib.optional wireguardOn "CAP_NET_ADMIN"
    # Shell sessions: become shell.user, give it its pty, end its processes.
    ++ lib.optionals cfg.shell.enable [ "CAP_SETUID" "CAP_SETGID" "CAP_CHOWN" "CAP_KILL" ]
    # Units inside containers (systemctl -M) and guest sessions (nsenter):
    # entering a container's namespaces and root, and reading its
    # leader's /proc/PID/ns and /proc/PID/root.
    ++ lib.optionals (watchesContainers || guestsOn) [ "CAP_SYS_ADMIN" "CAP_SYS_CHROOT" "CAP_SYS_PTRACE" ]
    ++ cfg.extraCapabilities);

  # The systemd producer watches units inside NixOS containers.
  watchesContainers = ((cfg.producers.systemd or { }).machines or { }) != { };

  # The services this host declares (nixos/lib.nix declaredServices), and
  # those its NixOS containers declare.
  declared = pinkieLib.declaredServices config;
  containerUnits = pinkieLib.containerServices config;

  pushDir = if cfg.deploy.pushTo == null then null else pinkieLib.fileStoreDir cfg.deploy.pushTo;

  args = pinkieLib.agentArgs {
    inherit (cfg) name hubs dataDir heartbeat outboxMaxBytes syncAlways logLevel logFormat extraArgs hubCompression;
    # %d: the unit's credentials directory (LoadCredential below).
    nkeyFile = if cfg.nkeyFile != null then "%d/nkey" else null;
    inherit configFile;
    activation = if cfg.deploy.enable then "systemd" else null;
    builder = cfg.builder.enable;
    inherit (cfg.deploy) pushTo substituter checkSigs rollbackTimeout;
    inherit (cfg) cacheListen nixTrustedKey;
    deployFlake = cfg.deploy.flake;
    shell = if cfg.shell.enable then cfg.shell else null;
  };

  # PostgreSQL: the agent's system user (root, or the DynamicUser named
  # after the unit) is mapped by peer authentication to a read-only role.
  pg = config.services.postgresql;
  agentUser = if cfg.deploy.enable then "root" else "pinkie-agent";
  pgRole = cfg.postgres.role;
  pgIdentMap = "pinkie";

  localHubNeedsKey = hub.enable && (hub.auth != null || hub.authDir != null)
    && lib.elem localHubURL cfg.hubs && cfg.nkeyFile == null;
in
{
  imports = [ ./common.nix ./deployment.nix ./hub.nix ];

  options.services.pinkie.agent = {
    enable = mkEnableOption "the pinkie agent: this host's events, buffered and sent to the hub; deploys of this host";

    name = mkOption {
      type = types.str;
      default = config.networking.hostName;
      defaultText = lib.literalExpression "config.networking.hostName";
      description = ''
        This host's name in the fleet: its key in the hub's auth file and,
        for deploys, its name in the flake's nixosConfigurations.
      '';
    };

    hubs = mkOption {
      type = types.listOf types.str;
      default = lib.optional hub.enable localHubURL;
      defaultText = lib.literalExpression ''[ "nats-leaf://127.0.0.1:7422" ] on the hub's own host, else [ ]'';
      example = [ "nats-leaf://hub.lan:7422" ];
      description = "The hub's leaf URLs (several for a clustered hub).";
    };

    nkeyFile = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "/run/agenix/pinkie-agent.nk";
      description = ''
        This host's nkey seed (`DIR/hosts/NAME.nk` from `pinkie keys init`).
        A path as a string, outside the Nix store (e.g. from agenix or
        sops-nix); it reaches the agent as a systemd credential.
      '';
    };

    dataDir = mkOption {
      type = types.str;
      default = "/var/lib/pinkie-agent";
      description = "The OUTBOX (events not yet at the hub) and producer state. Below /var/lib.";
    };

    producers = mkOption {
      type = types.attrsOf (types.submodule {
        freeformType = json.type;
        options = {
          enable = mkOption { type = types.nullOr types.bool; default = null; description = "Run this producer (null: its default, which is on where it applies)."; };
          interval = mkOption { type = types.nullOr types.str; default = null; example = "5m"; description = "How often it collects (a Go duration; null: its default)."; };
        };
      });
      default = { };
      example = lib.literalExpression ''
        {
          smart.enable = false;
          profile.interval = "6h";
          path.paths = [ "/var/lib/postgresql" "/srv/media" ];
          login.file = "/var/log/auth.log";
        }
      '';
      description = ''
        Producers and their options, rendered to the agent's config file
        (`{"producers": {NAME: {"enabled": …, "interval": …, OPTIONS…}}}`).
        Producers: ${lib.concatStringsSep ", " pinkieLib.producerNames}. Any
        other key is the producer's own option (see `pinkie collect --help`).
      '';
    };

    postgres.access = mkOption {
      type = types.bool;
      default = config.services.postgresql.enable or false;
      defaultText = lib.literalExpression "config.services.postgresql.enable";
      description = ''
        Let the postgres producer read this host's PostgreSQL: a login role
        (`postgres.role`) with `pg_monitor` (read-only monitoring), peer
        authentication on the local socket for it with an ident map that
        maps the agent's system user (root, or pinkie-agent without
        deploys) to it, and the producer's `dsn` pointed at it. Without it
        the producer connects as postgres, which peer authentication
        refuses to the agent.
      '';
    };
    postgres.role = mkOption {
      type = types.str;
      default = "pinkie";
      description = "The PostgreSQL role the agent connects as when `postgres.access` is on.";
    };

    heartbeat = mkOption { type = types.str; default = "30s"; description = "Heartbeat interval (a Go duration)."; };
    outboxMaxBytes = mkOption { type = types.ints.positive; default = 1024 * 1024 * 1024; description = "OUTBOX size limit; when full, new events are refused and logged."; };
    syncAlways = mkOption { type = types.bool; default = false; description = "fsync every event (survives power loss, slower)."; };
    logLevel = mkOption { type = types.enum [ "debug" "info" "warn" "error" ]; default = "info"; description = "Log level."; };
    logFormat = mkOption { type = types.enum [ "text" "json" ]; default = "text"; description = "Log format."; };

    memoryMax = mkOption {
      type = types.nullOr types.str;
      default = if cfg.shell.enable then null else "128M";
      defaultText = lib.literalExpression ''if shell.enable then null else "128M"'';
      example = "96M";
      description = ''
        systemd `MemoryMax` of the agent's unit: past it the kernel reclaims
        the unit's page cache, then kills. Measured (scripts/bench/agent-footprint)
        the agent with every default producer holds about 40 MiB after a
        minute: about 11 MiB its own (the Go heap's soft limit is
        `--memory-limit`, 16 MiB) and 27 MiB the binary's pages, which the
        kernel may drop. 128M leaves room for a backlog sent after an outage,
        the closures a deploy moves and health checks, which run in the unit.
        Shell sessions run in the unit too: with `shell.enable` the default is
        `null`, no limit. `null`: no limit.
      '';
    };

    hubCompression = mkOption {
      type = types.enum [ "off" "s2_auto" "s2_fast" "s2_better" "s2_best" ];
      default = "off";
      description = ''
        S2 compression of this agent's link to the hub (negotiated: off on
        either side is off). Off by default: on a LAN `s2_auto` sends
        uncompressed anyway but still runs the S2 writer, which cost the
        idle agent about a third of its CPU. A host far from the hub that
        fetches Nix closures over the link may gain from `s2_auto` (more
        compression the longer the round trip), if the hub's
        `leafCompression` is not `off`.
      '';
    };

    builder.enable = mkOption {
      type = types.bool;
      default = false;
      description = ''
        The builder role: build other hosts' systems when their
        `pinkie.deployment.buildOn` (or `pinkie deploy --build-on`) names
        this host. Builds go through nix-daemon; give the host the cores,
        and push the results where targets fetch them (`deploy.pushTo`).
      '';
    };

    deploy = {
      enable = mkOption {
        type = types.bool;
        default = true;
        description = ''
          Let the agent activate deploys of this host (runs it as uid 0 with
          a bounded capability set; see the module's header). Off: the agent
          runs as an unprivileged dynamic user, for monitoring only, and
          deploys of this host fail.
        '';
      };
      substituter = mkOption { type = types.nullOr types.str; default = null; example = "https://cache.example.org"; description = "Fetch closures built elsewhere from this store URL (default: nix.conf's substituters)."; };
      checkSigs = mkOption { type = types.bool; default = true; description = "Require signatures (nix.conf's `trusted-public-keys`) on closures fetched from `deploy.substituter`; `false` trusts whatever it serves (the agent logs a warning at every fetch). Closures from the hub's cache are always checked against the fleet key."; };
      pushTo = mkOption { type = types.nullOr types.str; default = null; example = "file:///var/cache/pinkie"; description = "After building, copy the closure to this store URL (`nix copy --to`); a file:// directory is made writable for the agent."; };
      flake = mkOption { type = types.nullOr types.str; default = null; example = "git+https://git.example.org/infra"; description = "Flake to build requests that name none."; };
      rollbackTimeout = mkOption {
        type = types.nullOr types.ints.unsigned;
        default = null;
        example = 120;
        description = ''
          Magic rollback: seconds this agent has after a switch to reach the
          hub again before it restores the previous generation, for deploys
          whose host sets no `pinkie.deployment.rollbackTimeout`. 0 turns it
          off for them; `null`: the agent's default (90).
        '';
      };
    };

    cacheListen = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "127.0.0.1:5123";
      description = ''
        Loopback address of the agent's substituter, which serves the hub's
        nix cache to this host's nix over the agent's link (`null`: a random
        port). Loopback only.
      '';
    };

    nixTrustedKey = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "pinkie-fleet-1:7mWl1x…=";
      description = ''
        The fleet's nix signing public key (`NAME:BASE64`, `DIR/nix-signing.pub`
        from `pinkie keys init`) to trust for closures from the hub's cache.
        Pinned here, it wins over what the hub says; `null`: learnt from the
        hub over the agent's authenticated link.
      '';
    };

    extraHealthChecks = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = "Added to `pinkie.deployment.healthChecks` (convenient in a module shared by many hosts).";
    };

    extraPackages = mkOption {
      type = types.listOf types.package;
      default = [ ];
      description = "Put on the agent's PATH, for producers and health checks.";
    };

    extraCapabilities = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "CAP_NET_RAW" ];
      description = "Capabilities added to the agent's bounding set, for health checks that need them.";
    };

    extraReadWritePaths = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = "Paths the agent (and its health checks) may write besides its state and the system profiles.";
    };

    shell = {
      enable = mkOption {
        type = types.bool;
        default = false;
        description = ''
          Serve `pinkie shell` sessions on this host: a terminal or a command
          over the agent's link to the hub, for operator keys only; every
          session is an audit event (`pinkie.host.<name>.shell.session`).
          Off, open requests are refused and nothing runs. Needs
          `deploy.enable` (the agent switches to `shell.user`). Sessions run
          inside the agent's unit and sandbox (read-only system, no new
          privileges, so no sudo).
        '';
      };
      user = mkOption {
        type = types.str;
        default = "pinkie-shell";
        example = "alice";
        description = ''
          The local user sessions run as. The default, `pinkie-shell`, is a
          normal user the module creates. Sessions run as root only when
          this says `root`.
        '';
      };
      guests = mkOption {
        type = types.bool;
        default = false;
        description = ''
          Let `pinkie shell HOST --guest NAME` enter this host's NixOS
          containers (nsenter into the machinectl leader's namespaces): the
          agent gets CAP_SYS_ADMIN, CAP_SYS_CHROOT and CAP_SYS_PTRACE and may
          join namespaces (RestrictNamespaces off). `shell.user` must exist
          in the container. MicroVMs need no privilege: their console socket
          (`shell.microvmConsole`).
        '';
      };
      microvmConsole = mkOption {
        type = types.str;
        default = "/var/lib/microvms/{name}/console.sock";
        description = ''
          Unix socket of a MicroVM's console for `--guest` ({name}: the VM's
          name). microvm.nix makes none by default; e.g. qemu's
          `-serial unix:PATH,server,nowait` in `microvm.qemu.extraArgs`.
        '';
      };
      maxSessions = mkOption { type = types.ints.positive; default = 4; description = "Most sessions open at once; more are refused."; };
      idleTimeout = mkOption { type = types.str; default = "15m"; description = "End a session with no input and no output for this long (a Go duration)."; };
      record = mkOption {
        type = types.bool;
        default = false;
        description = ''
          Keep each session's output (not its input) as an asciicast v2
          recording on this host, in the agent's own store (never at the
          hub); `pinkie shell HOST --replay ID` plays one back.
        '';
      };
    };

    extraArgs = mkOption { type = types.listOf types.str; default = [ ]; description = "Extra arguments for `pinkie agent`."; };
  };

  config = mkIf cfg.enable (lib.mkMerge [ {
    assertions = map (message: { assertion = false; inherit message; })
      (pinkieLib.agentProblems cfg
        ++ lib.optional localHubNeedsKey
          "services.pinkie.agent.nkeyFile is not set, but this host's hub requires authentication: give the agent its host key (pinkie keys init DIR --hosts ${cfg.name}; DIR/hosts/${cfg.name}.nk)."
        ++ lib.optional (cfg.shell.enable && !cfg.deploy.enable)
          "services.pinkie.agent.shell.enable needs deploy.enable: without it the agent runs as an unprivileged dynamic user and cannot run sessions as services.pinkie.agent.shell.user.");

    users.users = lib.optionalAttrs (cfg.shell.enable && cfg.shell.user == "pinkie-shell") {
      pinkie-shell = { isNormalUser = true; description = "pinkie shell sessions"; };
    };

    pinkie.deployment.healthChecks = cfg.extraHealthChecks;

    environment.systemPackages = [ config.services.pinkie.package ];

    systemd.tmpfiles.rules = lib.optional (pushDir != null) "d ${pushDir} 0755 root root -";

    systemd.services.pinkie-agent = {
      description = "pinkie agent";
      documentation = [ "https://github.com/pinkiefleet/pinkie/blob/main/docs/nixos.md" ];
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [ "network-online.target" "nix-daemon.socket" ];

      # See the header: the agent survives the deploys it performs.
      restartIfChanged = !cfg.deploy.enable;
      unitConfig.X-StopOnRemoval = !cfg.deploy.enable;

      path = [
        config.services.pinkie.package
        config.nix.package
        config.systemd.package
        pkgs.coreutils
        pkgs.smartmontools
      ]
      ++ lib.optional (config.boot.zfs.enabled or false) config.boot.zfs.package
      ++ lib.optional (config.services.fail2ban.enable or false) config.services.fail2ban.package
      ++ lib.optional wireguardOn pkgs.wireguard-tools
      ++ lib.optional guestsOn pkgs.util-linux
      ++ cfg.extraPackages
      # Last: health checks see the system just activated.
      ++ [ "/run/current-system/sw" ];

      environment = {
        NIX_REMOTE = "daemon";
        XDG_CACHE_HOME = "/var/cache/pinkie-agent";
      };

      serviceConfig = {
        ExecStart = lib.escapeShellArgs ([ (lib.getExe' config.services.pinkie.package "pinkie-agent") ] ++ args);
        Restart = "always";
        RestartSec = "5s";
        TimeoutStopSec = "60s";
        KillMode = if cfg.deploy.enable then "process" else "control-group";
        LoadCredential = lib.optional (cfg.nkeyFile != null) "nkey:${cfg.nkeyFile}";
      } // lib.optionalAttrs (cfg.memoryMax != null) {
        MemoryMax = cfg.memoryMax;
      } // {

        StateDirectory = lib.removePrefix "/var/lib/" cfg.dataDir;
        StateDirectoryMode = "0700";
        CacheDirectory = "pinkie-agent";
        # Closures pushed to a file:// cache must be readable by its server.
        UMask = "0022";

        CapabilityBoundingSet = capabilities;
        NoNewPrivileges = true;
        ProtectSystem = "strict";
        ReadWritePaths = lib.optionals cfg.deploy.enable [ "/nix/var/nix/profiles" ]
          ++ lib.optional (pushDir != null) pushDir
          ++ cfg.extraReadWritePaths;
        # Shell sessions run in this unit: their user's home must be writable.
        ProtectHome = if cfg.shell.enable then false else "read-only";
        PrivateTmp = true;
        # SMART reads the drives.
        PrivateDevices = false;
        ProtectKernelTunables = true;
        ProtectKernelModules = true;
        ProtectKernelLogs = true;
        ProtectControlGroups = true;
        ProtectClock = true;
        ProtectHostname = true;
        RestrictAddressFamilies = [ "AF_UNIX" "AF_INET" "AF_INET6" "AF_NETLINK" ];
        # systemctl -M joins a container's mount, PID and user namespaces
        # (setns); guest sessions join every kind nsenter enters.
        RestrictNamespaces = if guestsOn then false else if watchesContainers then "mnt pid user" else true;
        RestrictRealtime = true;
        RestrictSUIDSGID = true;
        LockPersonality = true;
        SystemCallArchitectures = "native";
      } // lib.optionalAttrs (!cfg.deploy.enable) {
        DynamicUser = true;
        # The journal (logins). The drives open read-only, which
        # CAP_DAC_READ_SEARCH allows without the disk group's write access.
        SupplementaryGroups = [ "systemd-journal" ];
        AmbientCapabilities = capabilities;
      };
    };
  }

  (mkIf cfg.postgres.access {
    assertions = map (message: { assertion = false; inherit message; }) (pinkieLib.postgresAccessProblems {
      inherit (cfg.postgres) role;
      postgresqlEnabled = pg.enable or false;
    });
    services.postgresql = {
      ensureUsers = [ { name = pgRole; ensureClauses.login = true; } ];
      # Peer authentication for the role, through the map: pg_hba.conf
      # takes the first line that matches, so this goes before the
      # defaults.
      identMap = ''
        ${pgIdentMap} ${agentUser} ${pgRole}
      '';
      authentication = lib.mkBefore ''
        local all ${pgRole} peer map=${pgIdentMap}
      '';
    };
    # ensureUsers cannot grant a role: pg_monitor is granted here, after
    # the server and its setup (which creates ensureUsers) have started.
    systemd.services.pinkie-postgres-access = {
      description = "Grant pinkie's PostgreSQL role read-only monitoring (pg_monitor)";
      wantedBy = [ "multi-user.target" ];
      requires = [ "postgresql.service" ];
      after = [ "postgresql.service" "postgresql-setup.service" ];
      before = [ "pinkie-agent.service" ];
      path = [ pg.package ];
      serviceConfig = { Type = "oneshot"; User = "postgres"; RemainAfterExit = true; };
      script = ''
        psql -v ON_ERROR_STOP=1 -d postgres <<'SQL'
        DO $$ BEGIN
          IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${pgRole}') THEN CREATE ROLE "${pgRole}" LOGIN; END IF;
        END $$;
        GRANT pg_monitor TO "${pgRole}";
        SQL
      '';
    };
    services.pinkie.agent.producers.postgres.dsn =
      lib.mkDefault "host=/run/postgresql user=${pgRole} dbname=postgres sslmode=disable";
  })
  {
    # Monitoring set up from the configuration: the systemd producer watches
    # the services the fleet export declares for this host, so the hub can
    # alert (service.down) when one is missing, failed or inactive. A host's
    # own list replaces it. (Their state directories are not measured from
    # here: reading systemd.services while defining the agent's own unit
    # would be an infinite recursion; the fleet export carries them.)
    services.pinkie.agent.producers.systemd.units = lib.mkDefault declared;
    # The services of its NixOS containers, read through machined
    # (systemctl -M NAME) while a container runs; the hub alerts on them as
    # GUEST/UNIT.
    services.pinkie.agent.producers.systemd.machines = lib.mkIf (containerUnits != { }) (lib.mkDefault containerUnits);
    # And it checks the domains this host serves (nginx and caddy virtual
    # hosts): status and TLS certificate expiry (http.down, tls.expiry).
    services.pinkie.agent.producers.httpcheck.urls = lib.mkDefault (map (d: d.url) (pinkieLib.domainsOf config));
  }
  ]);
}
