# services.pinkie.hub: the hub (embedded NATS server with JetStream, the
# fleet's streams, ingest check, alerter, notifier, deploy planner, HTTP).
#
# The unit runs with DynamicUser: the hub needs no privilege and no stable
# uid, only its StateDirectory. Files it must read that belong to root (the
# auth file, secrets named in settings) reach it with LoadCredential, so it
# never sees the nkey seeds that `pinkie keys init` keeps next to auth.json.
{ config, lib, pkgs, ... }:
let
  cfg = config.services.pinkie.hub;
  pinkieLib = import ./lib.nix;
  json = pkgs.formats.json { };
  inherit (lib) mkOption mkEnableOption mkIf types;

  hasAuth = cfg.auth != null || cfg.authDir != null;
  authFile =
    if cfg.auth != null then json.generate "pinkie-hub-auth.json" cfg.auth
    else "${cfg.authDir}/auth.json";
  configFile =
    if cfg.settings == { } then null
    else json.generate "pinkie-hub.json" (pinkieLib.hubConfig cfg.settings);
  credentialsDirectory = "/run/credentials/pinkie-hub.service";
  args = pinkieLib.hubArgs {
    inherit (cfg) dataDir listen maxStore maxEventBytes hostBudget syncAlways logLevel logFormat extraArgs leafCompression;
    # %d: the unit's credentials directory, holding only auth.json (and
    # the metrics token).
    authDir = if hasAuth then "%d" else null;
    metricsTokenFile = if cfg.metricsTokenFile != null then "%d/metrics-token" else null;
    fleetMetricsTokenFile = if cfg.fleetMetricsTokenFile != null then "%d/fleet-metrics-token" else null;
    nixSigningKeyFile = if cfg.nixSigningKeyFile != null then "%d/nix-signing.sec" else null;
    inherit (cfg) cacheBudget;
    inherit configFile;
    tlsCert = if cfg.tlsCert != null then "%d/tls-cert.pem" else null;
    tlsKey = if cfg.tlsKey != null then "%d/tls-key.pem" else null;
    cluster = cfg.cluster // {
      caFile = if cfg.cluster.caFile != null then "%d/cluster-ca.pem" else null;
    };
  };
  # The route password: the one in authDir unless named; the hub reads it
  # as AUTH_DIR/cluster.secret, so it joins auth.json in the credentials.
  clusterSecret =
    if cfg.cluster.secretFile != null then cfg.cluster.secretFile
    else if cfg.authDir != null then "${cfg.authDir}/cluster.secret"
    else null;
  lowPorts = lib.any (p: p < 1024) (map (a: a.port)
    (lib.filter (a: a != null) (map pinkieLib.splitAddress (lib.attrValues cfg.listen))));
  caps = lib.optional lowPorts "CAP_NET_BIND_SERVICE";

  listenOption = default: what: mkOption {
    type = types.str;
    inherit default;
    description = ''
      ${what} listener, `HOST:PORT` (`":PORT"` for every interface). Beyond
      loopback the hub requires `auth` or `authDir`.
    '';
  };
in
{
  imports = [ ./common.nix ];

  options.services.pinkie.hub = {
    enable = mkEnableOption "the pinkie hub: the fleet's NATS server, event store, alerter, notifier and deploy planner";

    listen = {
      nats = listenOption "127.0.0.1:4222" "Client (operators, CLI, CI)";
      leaf = listenOption "127.0.0.1:7422" "Leaf-node (agents)";
      http = listenOption "127.0.0.1:8080" "HTTP (/healthz, /metrics, dashboard)";
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = "Open the TCP ports of the listeners that are not on loopback.";
    };

    auth = mkOption {
      type = types.nullOr (types.submodule {
        options = {
          operators = mkOption { type = types.listOf types.str; default = [ ]; description = "Operator nkey public keys (U…): may publish deploy requests and the declared fleet."; };
          readers = mkOption { type = types.listOf types.str; default = [ ]; description = "Read-only nkey public keys (U…) for dashboards and CI."; };
          hosts = mkOption { type = types.attrsOf types.str; default = { }; description = "Host name → the host agent's nkey public key (U…)."; };
        };
      });
      default = null;
      example = lib.literalExpression ''builtins.fromJSON (builtins.readFile ./pinkie/auth.json)'';
      description = ''
        Who may connect, declared in Nix: the public keys of the auth.json
        that `pinkie keys init DIR --hosts a,b` writes. Public keys only, so
        the Nix store is a fine place for them; a change restarts the hub.
        Exclusive with `authDir`.
      '';
    };

    authDir = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "/var/lib/pinkie-keys";
      description = ''
        A directory holding auth.json (made by `pinkie keys init`), kept
        outside the Nix store so `pinkie keys add-host` can change it: the
        hub is restarted when auth.json changes. Only auth.json is passed to
        the hub (as a systemd credential), never the seeds beside it.
        Exclusive with `auth`.
      '';
    };

    dataDir = mkOption {
      type = types.str;
      default = "/var/lib/pinkie-hub";
      description = ''
        The JetStream store (the fleet's event history). Must be below
        /var/lib (a systemd StateDirectory of the dynamic user); to keep it
        on a volume, mount the volume there.
      '';
    };

    settings = mkOption {
      type = types.submodule { freeformType = json.type; };
      default = { };
      example = lib.literalExpression ''
        {
          alerts.repeat_interval = "12h";
          alerts.rules = [{
            name = "fs.usage"; kind = "fs"; for = "10m";
            levels = [ { severity = "critical"; when = "used_percent > 95"; } ];
            summary = "{{.host}}: {{.mount}} is {{.used_percent}}% full";
          }];
          notify.channels.phone = {
            type = "ntfy"; url = "https://ntfy.sh"; topic = "my-fleet";
            token_file = "/run/credentials/pinkie-hub.service/ntfy-token";
          };
        }
      '';
      description = ''
        The hub's configuration (`pinkie hub --config`), rendered to JSON:
        the sections `alerts` (rules), `notify` (channels), `deploy` and
        `dashboard`. Secrets never go here: name a key `…_file` and point it
        at a file given with `credentials`; a literal password, token or
        secret fails evaluation.
      '';
    };

    credentials = mkOption {
      type = types.attrsOf types.str;
      default = { };
      example = { ntfy-token = "/run/agenix/ntfy-token"; smtp-password = "/run/secrets/smtp"; };
      description = ''
        Secret files the hub may read, by name. Each is passed with systemd's
        LoadCredential and readable by the hub (only) at
        `/run/credentials/pinkie-hub.service/NAME`: use that path in the
        `settings` keys ending in `_file`.
      '';
    };

    credentialsDirectory = mkOption {
      type = types.str;
      readOnly = true;
      default = credentialsDirectory;
      description = "Where the hub finds its `credentials` (read-only).";
    };

    fleetMetricsTokenFile = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "/run/agenix/pinkie-fleet-metrics-token";
      description = ''
        A file holding a bearer token (at least 16 characters, e.g. from
        `openssl rand -hex 32`) for /metrics/fleet, every host's state for
        Prometheus. A scraper beyond loopback must send
        `Authorization: Bearer <token>`; without it (or with the
        metricsTokenFile token) it gets 401. Clients on loopback need none.
        The file reaches the hub as a systemd credential; keep it out of
        the Nix store.
      '';
    };

    metricsTokenFile = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "/run/agenix/pinkie-metrics-token";
      description = ''
        A file holding a bearer token (at least 16 characters, e.g. from
        `openssl rand -hex 32`). A scraper beyond loopback that sends
        `Authorization: Bearer <token>` sees per-host detail on /metrics
        and /healthz; without it, it gets status and numbers summed over
        hosts. Clients on loopback always see the detail. The file reaches
        the hub as a systemd credential; keep it out of the Nix store.
      '';
    };

    tlsCert = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "/var/lib/acme/hub1.lan/fullchain.pem";
      description = ''
        Certificate file (PEM): the client and leaf listeners then speak TLS
        only, and on a cluster the routes speak mutual TLS (route
        certificates need both server and client auth usage; see
        `cluster.caFile`). Passed as a systemd credential, with `tlsKey`.
      '';
    };
    tlsKey = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "/var/lib/acme/hub1.lan/key.pem";
      description = "Private key file (PEM) of `tlsCert`, outside the Nix store; passed as a systemd credential.";
    };

    cluster = {
      enable = mkEnableOption "this hub as a node of a clustered hub (three or five nodes, Raft-replicated JetStream; see docs/nixos.md)";
      name = mkOption {
        type = types.str;
        default = config.networking.hostName;
        defaultText = lib.literalExpression "config.networking.hostName";
        description = "This node's server name, unique in the cluster (`pinkie hub --server-name`).";
      };
      listen = mkOption {
        type = types.str;
        default = "0.0.0.0:6222";
        description = "The route listener other nodes connect to, `HOST:PORT` (`pinkie hub --cluster`).";
      };
      peers = mkOption {
        type = types.listOf types.str;
        default = [ ];
        example = [ "hub2.lan:6222" "hub3.lan:6222" ];
        description = ''
          The other nodes' route listeners (their `cluster.listen`), as
          `HOST:PORT`: two for a cluster of three, four for five. Listing
          every node, this one included, works too (one list for all
          nodes): the hub drops its own route, and the checks here count a
          peer as this node when it is `name` (or `name.…`) on this node's
          route port.
        '';
      };
      replicas = mkOption {
        type = types.nullOr types.ints.positive;
        default = null;
        description = "Replicas of every stream and bucket (`--replicas`); null: 3 on three nodes or more.";
      };
      openFirewall = mkOption {
        type = types.bool;
        default = false;
        description = "Open the route listener's TCP port (unless it is on loopback).";
      };
      secretFile = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "/run/agenix/pinkie-cluster.secret";
        description = ''
          The route password: the `cluster.secret` that `pinkie keys init`
          writes, the same file on every node. null: `authDir`'s
          cluster.secret (required with `auth`, which has no directory).
          Passed as a systemd credential; keep it out of the Nix store.
        '';
      };
      caFile = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = "CA certificate (PEM) that signs the nodes' `tlsCert`, trusted on routes (`--cluster-ca`); null: the system's CAs. Needs `tlsCert`.";
      };
      wait = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "5m";
        description = "How long a node waits at start for the cluster to form before it exits and systemd starts it again (`--cluster-wait`, a Go duration); null: the hub's 2m.";
      };
    };

    maxStore = mkOption { type = types.ints.positive; default = 10 * 1024 * 1024 * 1024; description = "JetStream file store limit in bytes."; };

    leafCompression = mkOption {
      type = types.enum [ "off" "s2_auto" "s2_fast" "s2_better" "s2_best" ];
      default = "s2_auto";
      description = ''
        S2 compression of the agents' leaf connections. `s2_auto` picks by
        round-trip time (none on a LAN, more on slower links). Every mode
        but `off` keeps encoder buffers per agent, about 5 MiB of hub
        memory each: with hundreds of agents on a LAN, use `off`. The
        mode is negotiated, off on either side is off: agents ask for
        `off` unless their `hubCompression` says otherwise.
      '';
    };

    cacheBudget = mkOption {
      type = types.nullOr (types.either types.ints.positive types.str);
      default = null;
      example = "20GiB";
      description = ''
        The size the hub's Nix binary cache (the closures deploys carry) is
        held to: bytes, or a number with a unit ("20GiB", "500MB"). It
        lives in the hub's store, so keep it under `maxStore`. Retention
        keeps the closures of each host's current and previous deploy, of
        deploys under way and of fresh uploads, and drops the rest oldest
        first (`pinkie cache --help`). null: a tenth of `maxStore`.
      '';
    };

    nixSigningKeyFile = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "/run/agenix/pinkie-nix-signing.sec";
      description = ''
        The fleet's Nix secret key (`nix-signing.sec`, made by `pinkie keys
        init`): the hub signs what hosts upload into its cache with it, and
        tells agents its public half. It reaches the hub as a systemd
        credential, read at start; keep it out of the Nix store. Without it
        (and without a key beside auth.json, which the hub is never given)
        the hub cannot sign hosts' uploads and agents must pin the fleet's
        public key (`services.pinkie.agent.nixTrustedKey`).
      '';
    };
    hostBudget = {
      enable = mkOption { type = types.bool; default = true; description = "Per-host ingest budgets: a host that sends more is paused at its source (its events wait in its own OUTBOX) and alerted on (`ingest.throttled`)."; };
      eventsPerSecond = mkOption { type = types.ints.positive; default = 100; description = "Events per second a host may send, sustained."; };
      bytesPerSecond = mkOption { type = types.ints.positive; default = 262144; description = "Bytes per second a host may send, sustained."; };
      burstEvents = mkOption { type = types.ints.positive; default = 50000; description = "Events a host may send at once (catching up after an outage) before the rate applies."; };
      burstBytes = mkOption { type = types.ints.positive; default = 67108864; description = "Bytes a host may send at once before the rate applies."; };
      cooldown = mkOption { type = types.str; default = "10s"; description = "Least pause of a host over its budget (a Go duration); it doubles with each pause in a row, up to twice the time the rate takes to refill a tenth of the burst (100s with the defaults)."; };
    };
    maxEventBytes = mkOption { type = types.ints.positive; default = 65536; description = "Largest event accepted; larger ones go to the dead letters."; };
    syncAlways = mkOption { type = types.bool; default = false; description = "fsync every write (survives power loss, slower)."; };
    logLevel = mkOption { type = types.enum [ "debug" "info" "warn" "error" ]; default = "info"; description = "Log level."; };
    logFormat = mkOption { type = types.enum [ "text" "json" ]; default = "text"; description = "Log format (the journal keeps either)."; };
    extraArgs = mkOption { type = types.listOf types.str; default = [ ]; description = "Extra arguments for `pinkie hub`."; };
  };

  config = mkIf cfg.enable {
    assertions = map (message: { assertion = false; inherit message; }) (pinkieLib.hubProblems cfg);

    environment.systemPackages = [ config.services.pinkie.package ];

    networking.firewall.allowedTCPPorts = lib.optionals cfg.openFirewall (pinkieLib.hubFirewallPorts cfg.listen)
      ++ pinkieLib.hubClusterFirewallPorts cfg.cluster;

    systemd.services.pinkie-hub = {
      description = "pinkie hub";
      documentation = [ "https://github.com/pinkiefleet/pinkie/blob/main/docs/nixos.md" ];
      wantedBy = [ "multi-user.target" ];
      # Listeners may bind to addresses that need the network up.
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];
      unitConfig.StartLimitIntervalSec = 0;
      serviceConfig = {
        ExecStart = lib.escapeShellArgs ([ (lib.getExe' config.services.pinkie.package "pinkie") "hub" ] ++ args);
        # The hub exits with status 1 when nats-server disables JetStream
        # (the disk is full) or the store keeps failing to write, and with
        # status 2 when it cannot open its store at start: restart it until
        # there is room again, backing off to a minute between attempts
        # (StartLimitIntervalSec = 0 below: never give up).
        Restart = "on-failure";
        RestartSec = "2s";
        RestartSteps = 5;
        RestartMaxDelaySec = "1min";
        # SIGTERM: the hub stops accepting, flushes the store and exits,
        # within about 15 s even when the store is full.
        TimeoutStopSec = "30s";
        LoadCredential = lib.optional hasAuth "auth.json:${authFile}"
          ++ lib.optional (cfg.metricsTokenFile != null) "metrics-token:${cfg.metricsTokenFile}"
          ++ lib.optional (cfg.fleetMetricsTokenFile != null) "fleet-metrics-token:${cfg.fleetMetricsTokenFile}"
          ++ lib.optional (cfg.nixSigningKeyFile != null) "nix-signing.sec:${cfg.nixSigningKeyFile}"
          ++ lib.optional (cfg.cluster.enable && clusterSecret != null) "cluster.secret:${clusterSecret}"
          ++ lib.optional (cfg.cluster.enable && cfg.cluster.caFile != null) "cluster-ca.pem:${cfg.cluster.caFile}"
          ++ lib.optional (cfg.tlsCert != null) "tls-cert.pem:${cfg.tlsCert}"
          ++ lib.optional (cfg.tlsKey != null) "tls-key.pem:${cfg.tlsKey}"
          ++ lib.mapAttrsToList (name: path: "${name}:${path}") cfg.credentials;

        DynamicUser = true;
        StateDirectory = lib.removePrefix "/var/lib/" cfg.dataDir;
        StateDirectoryMode = "0700";
        UMask = "0077";
        LimitNOFILE = 65536;

        CapabilityBoundingSet = if caps == [ ] then [ "" ] else caps;
        AmbientCapabilities = caps;
        NoNewPrivileges = true;
        ProtectSystem = "strict";
        ProtectHome = true;
        PrivateTmp = true;
        PrivateDevices = true;
        ProtectKernelTunables = true;
        ProtectKernelModules = true;
        ProtectKernelLogs = true;
        ProtectControlGroups = true;
        ProtectClock = true;
        ProtectHostname = true;
        ProtectProc = "invisible";
        # No ProcSubset=pid: /metrics' process collector reads /proc/stat.
        # AF_NETLINK: nats-server lists interfaces when it listens on every address.
        RestrictAddressFamilies = [ "AF_INET" "AF_INET6" "AF_UNIX" "AF_NETLINK" ];
        RestrictNamespaces = true;
        RestrictRealtime = true;
        RestrictSUIDSGID = true;
        LockPersonality = true;
        MemoryDenyWriteExecute = true;
        RemoveIPC = true;
        SystemCallArchitectures = "native";
        SystemCallFilter = [ "@system-service" "~@privileged" ];
        SystemCallErrorNumber = "EPERM";
      };
    };

    # With authDir, auth.json reaches the hub as a credential, copied at
    # start: restart the hub when `pinkie keys add-host` rewrites it.
    systemd.paths.pinkie-hub-auth = mkIf (cfg.authDir != null) {
      description = "restart the pinkie hub when its auth file changes";
      wantedBy = [ "multi-user.target" ];
      pathConfig = {
        PathChanged = "${cfg.authDir}/auth.json";
        Unit = "pinkie-hub-auth-changed.service";
      };
    };
    systemd.services.pinkie-hub-auth-changed = mkIf (cfg.authDir != null) {
      description = "restart the pinkie hub for its new auth file";
      serviceConfig.Type = "oneshot";
      script = "${config.systemd.package}/bin/systemctl try-restart pinkie-hub.service";
    };
  };
}
