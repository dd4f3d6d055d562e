# pinkie's Nix library: everything the NixOS modules and the fleet export
# compute that needs no nixpkgs. It uses builtins only, imports nothing and
# is one expression, so that
#   - the modules share one definition of defaults, checks and command lines,
#   - `pinkie fleet sync` can inline it into `nix eval --apply` (pure mode
#     forbids importing a file from outside the evaluated flake),
#   - tests on a machine without nixpkgs evaluate it for real (tests/nix_test.go).
let
  inherit (builtins)
    all any attrNames concatLists concatStringsSep elem filter foldl' head
    isAttrs isBool isInt isList isString length listToAttrs map mapAttrs match
    replaceStrings sort substring stringLength tail toJSON tryEval;

  # Host names: subject tokens and JetStream domain parts, as
  # events.ValidHost checks them (no '.', '*', '>' or whitespace). Tags may
  # also hold dots, never selector syntax ('@', '&', '!', ',', '*').
  namePattern = "[A-Za-z0-9][A-Za-z0-9_-]{0,62}";
  validName = s: isString s && match namePattern s != null;
  tagPattern = "[A-Za-z0-9][A-Za-z0-9_.-]{0,62}";
  validTag = s: isString s && match tagPattern s != null;

  hasPrefix = p: s: substring 0 (stringLength p) s == p;
  hasSuffix = x: s:
    let ls = stringLength s; lx = stringLength x;
    in ls >= lx && substring (ls - lx) lx s == x;
  removePrefix = p: s: if hasPrefix p s then substring (stringLength p) (stringLength s) s else s;
  removeSuffix = x: s: if hasSuffix x s then substring 0 (stringLength s - stringLength x) s else s;
  trim = s: let m = match "[[:space:]]*(.*[^[:space:]])[[:space:]]*" s; in if m == null then "" else head m;
  splitComma = s: filter (x: x != "") (map trim (filter isString (builtins.split "," s)));
  toLower = replaceStrings
    [ "A" "B" "C" "D" "E" "F" "G" "H" "I" "J" "K" "L" "M" "N" "O" "P" "Q" "R" "S" "T" "U" "V" "W" "X" "Y" "Z" ]
    [ "a" "b" "c" "d" "e" "f" "g" "h" "i" "j" "k" "l" "m" "n" "o" "p" "q" "r" "s" "t" "u" "v" "w" "x" "y" "z" ];
  unique = foldl' (acc: x: if elem x acc then acc else acc ++ [ x ]) [ ];
  optional = c: x: if c then [ x ] else [ ];
  optionals = c: xs: if c then xs else [ ];
  show = v: toJSON v;

  # attrByPath [ "a" "b" ] d s is s.a.b, or d when a step is missing or not
  # an attribute set.
  attrByPath = path: default: set:
    if path == [ ] then set
    else if isAttrs set && set ? ${head path} then attrByPath (tail path) default set.${head path}
    else default;

  # tryOr d v is v, or d when evaluating v throws (a host whose module
  # system cannot answer a question must not break the whole export).
  tryOr = default: v: let r = tryEval (builtins.deepSeq v v); in if r.success then r.value else default;

  # splitAddress "127.0.0.1:4222" = { host = "127.0.0.1"; port = 4222; },
  # "[::1]:4222" and ":4222" (every interface) too; null when malformed.
  splitAddress = addr:
    let
      v6 = match "\\[([^]]*)]:([0-9]+)" addr;
      v4 = match "([^:]*):([0-9]+)" addr;
      m = if v6 != null then v6 else v4;
    in
    if !isString addr || m == null then null
    else { host = head m; port = builtins.fromJSON (head (tail m)); };

  isLoopbackHost = h: h == "localhost" || h == "::1" || hasPrefix "127." h;

  # The host of a URL such as nats-leaf://hub.lan:7422.
  urlHost = u:
    let m = match "[a-z-]+://(\\[[^]]*]|[^:/]*).*" u;
    in if m == null then "" else replaceStrings [ "[" "]" ] [ "" "" ] (head m);
  urlScheme = u: let m = match "([a-z-]+)://.*" u; in if m == null then "" else head m;

  # Producer names, as producers/all.go lists them (a test keeps the two in
  # step).
  producerNames = [
    "btrfs" "fail2ban" "fs" "guest" "heartbeat" "httpcheck" "login" "mdraid" "network"
    "path" "postgres" "profile" "smart" "systemd" "zfs"
  ];

  # Deploy goals: switch-to-configuration's actions.
  goals = [ "switch" "boot" "test" "dry-activate" ];

  # What a host's pinkie.deployment holds when it sets nothing. The NixOS
  # option declarations take their defaults from here, and the fleet export
  # fills in hosts that do not import pinkie's module with them.
  deploymentDefaults = {
    # Free-form labels to select hosts by (`pinkie deploy @web`).
    tags = [ ];
    # Where the closure is built: "local" (the deploying process), "target"
    # (the host's own agent) or the name of a host whose agent has the
    # builder role. null: the fleet default (pinkie deploy --build-on, else
    # local).
    buildOn = null;
    # How to reach the host when it is not its name (an address or DNS
    # name); null: the host's name.
    targetHost = null;
    # Left out of `pinkie deploy all`; only deployed when named.
    requireExplicit = false;
    # switch-to-configuration's action.
    goal = "switch";
    # Commands the agent runs after activating; a non-zero exit rolls back.
    healthChecks = [ ];
    # Seconds the agent has after the switch to reach the hub again before
    # it rolls back (magic rollback); null: the agent's --rollback-timeout.
    rollbackTimeout = null;
  };

  # Secrets belong in files. A settings key that names a secret (password,
  # token, secret, api key, credentials) must end in _file or File and hold a
  # path; a literal secret would land in the world-readable Nix store.
  secretKey = k:
    let l = toLower k;
    in match ".*(password|passwd|token|secret|api_?key|credential).*" l != null
      && !(hasSuffix "file" l || hasSuffix "_path" l || hasSuffix "hash" l);
  secretLiterals = prefix: v:
    if isAttrs v then
      concatLists (map
        (k:
          let p = if prefix == "" then k else "${prefix}.${k}";
          in if secretKey k && isString v.${k} && v.${k} != "" then [ p ] else secretLiterals p v.${k})
        (filter (k: k != "_module") (attrNames v)))
    else if isList v then
      concatLists (builtins.genList (i: secretLiterals "${prefix}[${toString i}]" (builtins.elemAt v i)) (length v))
    else [ ];

  # stripModule removes the module system's bookkeeping from a value about
  # to become JSON.
  stripModule = v:
    if isAttrs v then mapAttrs (_: stripModule) (removeAttrs v [ "_module" ])
    else if isList v then map stripModule v
    else v;

  # --- the hub --------------------------------------------------------------

  # hubProblems cfg lists what makes a hub configuration impossible, each as
  # a message that says how to fix it. cfg holds the module's values:
  # { listen = { nats; leaf; http; }; auth; authDir; dataDir; settings; }.
  hubProblems = cfg:
    let
      opt = "services.pinkie.hub";
      hasAuth = cfg.auth != null || cfg.authDir != null;
      listeners = [ "nats" "leaf" "http" ];
      bad = filter (l: splitAddress cfg.listen.${l} == null) listeners;
      open = filter (l: let a = splitAddress cfg.listen.${l}; in a != null && !isLoopbackHost a.host) listeners;
      # The bearer token files, by option name, that are set.
      tokenFiles = filter (t: t.file != null) [
        { name = "metricsTokenFile"; file = cfg.metricsTokenFile or null; }
        { name = "fleetMetricsTokenFile"; file = cfg.fleetMetricsTokenFile or null; }
      ];
      signingKey = cfg.nixSigningKeyFile or null;
      cacheBudget = cfg.cacheBudget or null;
    in
    map (l: "${opt}.listen.${l} = ${show cfg.listen.${l}} is not HOST:PORT (e.g. \"127.0.0.1:4222\", \"[::1]:4222\" or \":4222\" for every interface).") bad
    ++ optionals (!hasAuth) (map
      (l: "${opt}.listen.${l} = ${show cfg.listen.${l}} listens beyond loopback, which needs authentication: set ${opt}.auth (the public keys of `pinkie keys init DIR`'s DIR/auth.json) or ${opt}.authDir (a directory holding auth.json), or listen on 127.0.0.1 only.")
      open)
    ++ optional (cfg.auth != null && cfg.authDir != null)
      "${opt}.auth and ${opt}.authDir are both set: use auth to declare the public keys in Nix, or authDir to keep a mutable auth.json (for `pinkie keys add-host`), not both."
    ++ optional (!hasPrefix "/var/lib/" cfg.dataDir || cfg.dataDir == "/var/lib/")
      "${opt}.dataDir = ${show cfg.dataDir} is not below /var/lib/: the hub runs with DynamicUser, and systemd can only hand it a StateDirectory there. Mount your volume at /var/lib/pinkie-hub instead."
    ++ concatLists (map (t:
      optional (hasPrefix "/nix/store" t.file)
        "${opt}.${t.name} = ${show t.file} is in the Nix store, which every user can read: keep the token outside it (e.g. /run/agenix/pinkie-metrics-token) and give its path as a string, not a Nix path."
      ++ optional (!hasPrefix "/" t.file)
        "${opt}.${t.name} = ${show t.file} is not an absolute path.") tokenFiles)
    ++ optional (signingKey != null && hasPrefix "/nix/store" signingKey)
      "${opt}.nixSigningKeyFile = ${show signingKey} is in the Nix store, which every user can read: whoever holds the fleet's Nix secret key can sign paths every host installs as root. Keep it outside (e.g. /run/agenix/pinkie-nix-signing.sec) and give its path as a string, not a Nix path."
    ++ optional (signingKey != null && !hasPrefix "/" signingKey)
      "${opt}.nixSigningKeyFile = ${show signingKey} is not an absolute path."
    ++ optional (isString cacheBudget && builtins.match "[0-9]+(\\.[0-9]+)? ?(B|K|KiB|M|MiB|G|GiB|T|TiB|kB|KB|MB|GB|TB)?" cacheBudget == null)
      "${opt}.cacheBudget = ${show cacheBudget} is not a size: want bytes or a number with a unit, e.g. \"20GiB\", \"500MB\" or 21474836480."
    ++ map (p: "${opt}.settings.${p} holds a literal secret, which would be copied into the world-readable Nix store: put it in a file, name the key ${p}_file, and pass the file with ${opt}.credentials (it is then readable at /run/credentials/pinkie-hub.service/NAME).")
      (secretLiterals "" cfg.settings)
    ++ secretFileProblems "${opt}.tlsKey" (cfg.tlsKey or null)
    ++ optional (((cfg.tlsCert or null) == null) != ((cfg.tlsKey or null) == null))
      "${opt}.tlsCert and ${opt}.tlsKey go together: set both (the certificate and its private key) or neither."
    ++ hubClusterProblems cfg;

  # secretFileProblems opt path: a secret file must be an absolute path
  # outside the world-readable Nix store (null: not set, fine).
  secretFileProblems = opt: path:
    optional (path != null && hasPrefix "/nix/store" path)
      "${opt} = ${show path} is in the Nix store, which every user can read: keep it outside (e.g. under /run/agenix) and give its path as a string, not a Nix path."
    ++ optional (path != null && !hasPrefix "/" path)
      "${opt} = ${show path} is not an absolute path.";

  # clusterPeerSelf c p: whether the peer p ({ host; port; }) is this node
  # itself (its name, or a name under it such as hub1.lan for hub1, or the
  # listener's own address, on the listener's port). Peers may list every
  # node, this one included: the hub drops its own route.
  clusterPeerSelf = c: p:
    let l = splitAddress c.listen;
    in l != null && p.port == l.port
      && (p.host == c.name || hasPrefix "${c.name}." p.host || (p.host == l.host && l.host != "" && l.host != "0.0.0.0" && l.host != "::"));

  # hubClusterProblems cfg: what is wrong with cfg.cluster ({ enable; name;
  # listen; peers; replicas; openFirewall; secretFile; caFile; }).
  hubClusterProblems = cfg:
    let
      opt = "services.pinkie.hub.cluster";
      c = cfg.cluster or { enable = false; };
      peers = map (p: { raw = p; addr = if isString p then splitAddress p else null; }) c.peers;
      good = filter (p: p.addr != null) peers;
      others = filter (p: !clusterPeerSelf c p.addr) good;
      nodes = length others + 1;
      dups = filter (p: length (filter (q: q == p) c.peers) > 1) (unique c.peers);
      secretFile = c.secretFile or null;
      hasAuth = cfg.auth != null || cfg.authDir != null;
    in
    optionals c.enable (
      optional (!isString c.name || match "[A-Za-z0-9][A-Za-z0-9_.-]{0,62}" c.name == null)
        "${opt}.name = ${show c.name} is not a server name: want letters, digits, '-', '_' or '.', e.g. \"hub1\" (it defaults to networking.hostName; every node needs its own)."
      ++ optional (splitAddress c.listen == null)
        "${opt}.listen = ${show c.listen} is not HOST:PORT (e.g. \"0.0.0.0:6222\")."
      ++ map (p: "${opt}.peers: ${show p.raw} is not HOST:PORT: give each other node's cluster.listen address as host:port, e.g. \"hub2.lan:6222\"" + (if isString p.raw && match ".*://.*" p.raw != null then " (without the scheme: the module adds nats-route://)." else "."))
        (unique (filter (p: p.addr == null) peers))
      ++ map (p: "${opt}.peers lists ${show p} more than once.") dups
      ++ optional (good == peers && dups == [ ] && nodes < 3)
        "${opt}.peers = ${show c.peers}: a cluster needs at least 3 nodes: give the 2 others in peers (host:port of their cluster.listen; ${toString (length others)} given), e.g. [ \"hub2.lan:6222\" \"hub3.lan:6222\" ]."
      ++ optional ((c.replicas or null) != null && (c.replicas < 1 || c.replicas > 5 || c.replicas > nodes))
        "${opt}.replicas = ${toString c.replicas}: want 1 to ${toString (if nodes < 5 then nodes else 5)} (no more than the ${toString nodes} nodes, and JetStream's limit is 5), or null for 3."
      ++ optional (!hasAuth)
        "${opt}.enable needs services.pinkie.hub.auth or services.pinkie.hub.authDir: the nodes authenticate their routes with the auth directory's cluster.secret."
      ++ optional (cfg.auth != null && secretFile == null)
        "${opt}.secretFile is not set: with services.pinkie.hub.auth declared in Nix the module cannot find the route password; point it at the cluster.secret `pinkie keys init` wrote (the same file on every node), e.g. \"/run/agenix/pinkie-cluster.secret\"."
      ++ secretFileProblems "${opt}.secretFile" secretFile
      ++ optional ((c.caFile or null) != null && (cfg.tlsCert or null) == null)
        "${opt}.caFile is set but services.pinkie.hub.tlsCert is not: routes speak TLS only with the hub's certificate; set tlsCert and tlsKey, or drop caFile.");

  # hubClusterArgs c: the cluster flags of `pinkie hub` (none when the
  # cluster is off). Credential paths are given by the caller (caFile).
  hubClusterArgs = c:
    optionals (c != null && c.enable) (
      [ "--server-name" c.name "--cluster" c.listen
        "--routes" (concatStringsSep "," (map (p: "nats-route://${p}") c.peers)) ]
      ++ optionals ((c.replicas or null) != null) [ "--replicas" (toString c.replicas) ]
      ++ optionals ((c.caFile or null) != null) [ "--cluster-ca" c.caFile ]
      ++ optionals ((c.wait or null) != null) [ "--cluster-wait" c.wait ]);

  # The route port to open: the cluster's listener, unless on loopback.
  hubClusterFirewallPorts = c:
    let a = splitAddress c.listen;
    in optional (c.enable && c.openFirewall && a != null && !isLoopbackHost a.host) a.port;

  # hubArgs o is the hub's command line after `pinkie hub`. o: { dataDir;
  # listen; authDir (null: no auth); configFile (null: none); maxStore;
  # maxEventBytes; syncAlways; logLevel; logFormat; extraArgs;
  # metricsTokenFile, fleetMetricsTokenFile, cacheBudget, nixSigningKeyFile
  # (optional, null: none); leafCompression (optional: the hub's default);
  # } and optionally hostBudget
  # { enable; eventsPerSecond; bytesPerSecond; burstEvents; burstBytes;
  # cooldown; } (absent: the hub's defaults).
  hubArgs = o:
    [ "--data" o.dataDir "--nats" o.listen.nats "--leaf" o.listen.leaf "--http" o.listen.http
      "--max-store" (toString o.maxStore) "--max-event-bytes" (toString o.maxEventBytes)
      "--log-level" o.logLevel "--log-format" o.logFormat ]
    ++ optionals (o ? hostBudget) (let b = o.hostBudget; in
      if b.enable then
        [ "--host-rate" "${toString b.eventsPerSecond},${toString b.bytesPerSecond}"
          "--host-burst" "${toString b.burstEvents},${toString b.burstBytes}"
          "--host-cooldown" b.cooldown ]
      else [ "--host-rate" "off" ])
    ++ optionals (o.authDir != null) [ "--auth" o.authDir ]
    ++ optionals ((o.metricsTokenFile or null) != null) [ "--metrics-token-file" o.metricsTokenFile ]
    ++ optionals ((o.fleetMetricsTokenFile or null) != null) [ "--fleet-metrics-token-file" o.fleetMetricsTokenFile ]
    ++ optionals ((o.cacheBudget or null) != null) [ "--cache-budget" (toString o.cacheBudget) ]
    ++ optionals ((o.nixSigningKeyFile or null) != null) [ "--nix-signing-key" o.nixSigningKeyFile ]
    ++ optionals ((o.leafCompression or "s2_auto") != "s2_auto") [ "--leaf-compression" o.leafCompression ]
    ++ optionals ((o.tlsCert or null) != null) [ "--tls-cert" o.tlsCert "--tls-key" o.tlsKey ]
    ++ hubClusterArgs (o.cluster or null)
    ++ optionals (o.configFile != null) [ "--config" (toString o.configFile) ]
    ++ optional o.syncAlways "--sync-always"
    ++ o.extraArgs;

  # hubConfig settings is the JSON document `pinkie hub --config` reads:
  # the sections alerts, notify, deploy and dashboard, as set.
  hubConfig = settings: stripModule settings;

  # Ports to open for the listeners that are not on loopback.
  hubFirewallPorts = listen:
    map (a: a.port) (filter (a: a != null && !isLoopbackHost a.host)
      (map (l: splitAddress listen.${l}) [ "nats" "leaf" "http" ]));

  # --- the agent ------------------------------------------------------------

  # agentProblems cfg: { name; hubs; nkeyFile; dataDir; producers; }.
  agentProblems = cfg:
    let
      opt = "services.pinkie.agent";
      schemes = [ "nats-leaf" "tls" "nats" "ws" "wss" ];
      remote = filter (u: !isLoopbackHost (urlHost u)) cfg.hubs;
      unknown = filter (n: !elem n producerNames) (attrNames cfg.producers);
    in
    optional (cfg.hubs == [ ])
      "${opt}.enable is true but ${opt}.hubs is empty: set it to the hub's leaf URL, e.g. [ \"nats-leaf://hub.lan:7422\" ] (the hub's services.pinkie.hub.listen.leaf)."
    ++ map (u: "${opt}.hubs: ${show u} is not a hub leaf URL: want nats-leaf://HOST:PORT (or tls://HOST:PORT).")
      (filter (u: !elem (urlScheme u) schemes || urlHost u == "") cfg.hubs)
    ++ optional (!validName cfg.name)
      "${opt}.name = ${show cfg.name} is not a valid pinkie host name: use letters, digits, '-' and '_' (at most 63), no dots. It defaults to networking.hostName."
    ++ optional (cfg.nkeyFile == null && remote != [ ])
      "${opt}.nkeyFile is not set, but the hub ${show (head remote)} is not on this host, and a hub listening beyond loopback requires an nkey: create one with `pinkie keys init DIR --hosts ${cfg.name}` (or `pinkie keys add-host DIR ${cfg.name}`) and deploy DIR/hosts/${cfg.name}.nk to this host, e.g. with agenix or sops-nix."
    ++ optional (cfg.nkeyFile != null && hasPrefix "/nix/store" cfg.nkeyFile)
      "${opt}.nkeyFile = ${show cfg.nkeyFile} is in the Nix store, which every user can read: keep the seed outside it (e.g. /run/agenix/pinkie.nk or /var/lib/pinkie/${cfg.name}.nk) and give its path as a string, not a Nix path."
    ++ optional (cfg.nkeyFile != null && !hasPrefix "/" cfg.nkeyFile)
      "${opt}.nkeyFile = ${show cfg.nkeyFile} is not an absolute path."
    ++ optional (!hasPrefix "/var/lib/" cfg.dataDir || cfg.dataDir == "/var/lib/")
      "${opt}.dataDir = ${show cfg.dataDir} is not below /var/lib/: systemd hands the agent its StateDirectory there."
    ++ map (n: "${opt}.producers.${n}: there is no producer ${show n}; producers are: ${concatStringsSep ", " producerNames}.") unknown
    ++ map (p: "${opt}.${p} holds a literal secret, which would be copied into the world-readable Nix store: put it in a file and name the key ${p}_file (e.g. producers.postgres.password_file).")
      (secretLiterals "producers" cfg.producers);

  # postgresAccessProblems o: what is wrong with services.pinkie.agent's
  # PostgreSQL access (o: { role; postgresqlEnabled; }).
  postgresAccessProblems = o:
    optional (match "[a-z_][a-z0-9_]{0,62}" o.role == null)
      "services.pinkie.agent.postgres.role = ${show o.role} is not a plain PostgreSQL role name (lower-case letters, digits and _, not starting with a digit)."
    ++ optional (!o.postgresqlEnabled)
      "services.pinkie.agent.postgres.access is on but services.postgresql.enable is not: the access is set up on this host's own server."
    ++ optional (o.role == "postgres")
      "services.pinkie.agent.postgres.role = \"postgres\": give the agent a role of its own (e.g. \"pinkie\"), not the superuser.";

  # agentConfig producers is the JSON document `pinkie agent --config`
  # reads: {"producers": {"<name>": {"enabled": …, "interval": …, options…}}}.
  # In Nix a producer is switched with `enable` (the NixOS convention); null
  # enable/interval keep the agent's defaults.
  agentConfig = producers: {
    producers = mapAttrs
      (_: p:
        let rest = removeAttrs (stripModule p) [ "enable" "interval" ];
        in rest
          // (if (p.enable or null) != null then { enabled = p.enable; } else { })
          // (if (p.interval or null) != null then { interval = p.interval; } else { }))
      producers;
  };

  # agentArgs o is the agent's command line after `pinkie-agent` (or `pinkie agent`). o: { name;
  # hubs; dataDir; nkeyFile; configFile; heartbeat; outboxMaxBytes;
  # syncAlways; logLevel; logFormat; activation (null: the agent's choice);
  # builder; pushTo; substituter; checkSigs; deployFlake; cacheListen;
  # nixTrustedKey; rollbackTimeout; shell; hubCompression; extraArgs; }
  # (cacheListen, nixTrustedKey, rollbackTimeout, hubCompression and shell
  # { user; maxSessions; idleTimeout; record; } may be absent or null: the
  # agent's defaults, no shell).
  agentArgs = o:
    [ "--name" o.name "--data" o.dataDir "--heartbeat" o.heartbeat
      "--outbox-max-bytes" (toString o.outboxMaxBytes)
      "--log-level" o.logLevel "--log-format" o.logFormat ]
    ++ concatLists (map (u: [ "--hub" u ]) o.hubs)
    ++ optionals (o.nkeyFile != null) [ "--nkey" o.nkeyFile ]
    ++ optionals (o.configFile != null) [ "--config" (toString o.configFile) ]
    ++ optional o.syncAlways "--sync-always"
    ++ optionals (o.activation != null) [ "--activation" o.activation ]
    ++ optional o.builder "--builder"
    ++ optionals (o.pushTo != null) [ "--deploy-push" o.pushTo ]
    ++ optionals (o.substituter != null) [ "--deploy-substituter" o.substituter ]
    ++ optional (o.substituter != null && !o.checkSigs) "--deploy-check-sigs=false"
    ++ optionals (o.deployFlake != null) [ "--deploy-flake" o.deployFlake ]
    ++ optionals ((o.cacheListen or null) != null) [ "--cache-listen" o.cacheListen ]
    ++ optionals ((o.nixTrustedKey or null) != null) [ "--nix-trusted-key" o.nixTrustedKey ]
    ++ optionals ((o.rollbackTimeout or null) != null) [ "--rollback-timeout" "${toString o.rollbackTimeout}s" ]
    ++ optionals ((o.shell or null) != null) [ "--shell" "--shell-user" o.shell.user
      "--shell-max-sessions" (toString o.shell.maxSessions) "--shell-idle-timeout" o.shell.idleTimeout ]
    ++ optional ((o.shell or null) != null && (o.shell.record or false)) "--shell-record"
    ++ optionals ((o.shell or null) != null && (o.shell.microvmConsole or null) != null) [ "--shell-microvm-console" o.shell.microvmConsole ]
    ++ optionals ((o.hubCompression or "off") != "off") [ "--hub-compression" o.hubCompression ]
    ++ o.extraArgs;

  # fileStoreDir "file:///var/cache/pinkie?compression=zstd" is
  # "/var/cache/pinkie": the directory a file:// store URL writes to.
  fileStoreDir = url:
    let m = match "file://(/[^?]*).*" url;
    in if !isString url || m == null then null else head m;

  # --- pinkie.deployment ----------------------------------------------------

  # deploymentProblems d: what is impossible in one host's
  # pinkie.deployment d.
  deploymentProblems = d:
    let opt = "pinkie.deployment";
    in
    map (t: "${opt}.tags: ${show t} is not a valid tag: use letters, digits, '-', '_' and '.' (selectors use '@', '&', '!', ',' and '*').")
      (filter (t: !validTag t) d.tags)
    ++ optional (d.buildOn != null && !elem d.buildOn [ "local" "target" ] && !validName d.buildOn)
      "${opt}.buildOn = ${show d.buildOn}: want \"local\", \"target\" or the name of a host whose agent has the builder role (services.pinkie.agent.builder.enable)."
    ++ optional (d.targetHost != null && trim d.targetHost == "")
      "${opt}.targetHost is an empty string: set null to reach the host by its name."
    ++ optional (!elem d.goal goals)
      "${opt}.goal = ${show d.goal}: want one of ${concatStringsSep ", " goals}."
    ++ optional (any (c: trim c == "") d.healthChecks)
      "${opt}.healthChecks holds an empty command."
    ++ optional ((d.rollbackTimeout or null) != null && (!isInt d.rollbackTimeout || d.rollbackTimeout < 1 || d.rollbackTimeout > 86400))
      "${opt}.rollbackTimeout = ${show d.rollbackTimeout}: want seconds from 1 to 86400, or null for the agent's default (services.pinkie.agent.deploy.rollbackTimeout).";

  # --- the fleet export -----------------------------------------------------

  # Web servers whose virtual hosts become domains.
  nginxDomains = config:
    let
      vhosts = attrByPath [ "services" "nginx" "virtualHosts" ] { } config;
      enabled = attrByPath [ "services" "nginx" "enable" ] false config;
      one = name: v:
        let
          server = if (v.serverName or null) != null then v.serverName else name;
          https = (v.forceSSL or false) || (v.onlySSL or false) || (v.addSSL or false)
            || (v.enableACME or false) || (v.useACMEHost or null) != null;
          locations = v.locations or { };
          # Where it proxies to: each location's proxyPass.
          upstreams = unique (filter (u: isString u && u != "")
            (map (l: locations.${l}.proxyPass or null) (attrNames locations)));
        in { name = server; url = "${if https then "https" else "http"}://${server}"; server = "nginx"; aliases = v.serverAliases or [ ]; }
          // (if upstreams == [ ] then { } else { inherit upstreams; });
    in
    if !enabled then [ ] else filter (d: usefulDomain d.name) (map (n: one n vhosts.${n}) (attrNames vhosts));

  caddyDomains = config:
    let
      vhosts = attrByPath [ "services" "caddy" "virtualHosts" ] { } config;
      enabled = attrByPath [ "services" "caddy" "enable" ] false config;
      # Caddy site addresses: "example.org", "http://example.org",
      # "example.org:8443", several comma-separated. Caddy serves HTTPS
      # unless the address says http://.
      parse = addr:
        let
          scheme = if hasPrefix "http://" addr then "http" else "https";
          bare = removePrefix "https://" (removePrefix "http://" addr);
          host = let m = match "([^:/]*).*" bare; in if m == null then bare else head m;
        in { inherit scheme host; url = "${scheme}://${bare}"; };
      one = name: v:
        let addrs = splitComma (if (v.hostName or null) != null then v.hostName else name);
        in
        if addrs == [ ] then null
        else
          let
            first = parse (head addrs);
            # reverse_proxy lines of its Caddyfile snippet.
            upstreams = unique (concatLists (map
              (line: let m = match "[[:space:]]*reverse_proxy[[:space:]]+([^{]*[^{[:space:]]).*" line; in
                if m == null then [ ] else filter (x: isString x && x != "" && !hasPrefix "/" x) (builtins.split "[[:space:]]+" (head m)))
              (filter isString (builtins.split "\n" (v.extraConfig or "")))));
          in { name = first.host; url = first.url; server = "caddy"; aliases = map (a: (parse a).host) (tail addrs) ++ (v.serverAliases or [ ]); }
            // (if upstreams == [ ] then { } else { inherit upstreams; });
    in
    if !enabled then [ ]
    else filter (d: d != null && usefulDomain d.name) (map (n: one n vhosts.${n}) (attrNames vhosts));

  # Names a dashboard cannot link to: catch-alls, regexes, wildcards,
  # loopback, bare ports.
  usefulDomain = n: n != "" && n != "_" && n != "localhost" && !hasPrefix "~" n && !hasPrefix "*" n
    && !hasPrefix "127." n && !hasPrefix ":" n;

  # Units the export reports when their NixOS service is enabled, besides
  # those a host lists in pinkie.fleet.services.
  wellKnownServices = [
    { path = [ "services" "pinkie" "hub" ]; unit = "pinkie-hub.service"; }
    { path = [ "services" "pinkie" "agent" ]; unit = "pinkie-agent.service"; }
    { path = [ "services" "nginx" ]; unit = "nginx.service"; }
    { path = [ "services" "caddy" ]; unit = "caddy.service"; }
    { path = [ "services" "httpd" ]; unit = "httpd.service"; }
    { path = [ "services" "postgresql" ]; unit = "postgresql.service"; }
    { path = [ "services" "mysql" ]; unit = "mysql.service"; }
    { path = [ "services" "openssh" ]; unit = "sshd.service"; }
  ];
  unitName = u: if match ".*\\.(service|timer|socket|mount|target|path)" u != null then u else "${u}.service";

  # declaredServices config: the units a NixOS configuration should run:
  # the well-known services it enables and those it lists in
  # pinkie.fleet.services, sorted. The agent module watches them (the
  # systemd producer's units), the hub alerts when one is not running.
  declaredServices = config:
    let
      enabledAt = p: tryOr false (attrByPath (p ++ [ "enable" ]) false config);
      listed = tryOr [ ] (attrByPath [ "pinkie" "fleet" "services" ] [ ] config);
      known = map (s: s.unit) (filter (s: enabledAt s.path) wellKnownServices);
    in sort (a: b: a < b) (unique (known ++ map unitName listed));

  # stateDirsOf config services: per service, the directories its systemd
  # StateDirectory gives it (below /var/lib), for the services that have one.
  stateDirsOf = config: services:
    let
      units = tryOr { } (attrByPath [ "systemd" "services" ] { } config);
      dirsOf = u:
        let
          n = removeSuffix ".service" u;
          sd = tryOr null ((units.${n} or { }).serviceConfig.StateDirectory or null);
          list = if isString sd then filter (x: isString x && x != "") (builtins.split "[[:space:]]+" sd) else if isList sd then filter isString sd else [ ];
        in map (d: "/var/lib/${d}") list;
      withDirs = filter (u: dirsOf u != [ ]) services;
    in listToAttrs (map (u: { name = u; value = dirsOf u; }) withDirs);

  # domainsOf config: the web server virtual hosts of a configuration.
  domainsOf = config: sort (a: b: a.name < b.name) (tryOr [ ] (nginxDomains config) ++ tryOr [ ] (caddyDomains config));

  # guestsOf config: the NixOS containers (containers.<name>, whose config
  # is the container's evaluated NixOS configuration) and microvm.nix
  # MicroVMs (microvm.vms.<name>) of a host, with their own services and
  # domains.
  guestsOf = config:
    let
      containers = tryOr { } (attrByPath [ "containers" ] { } config);
      vms = tryOr { } (attrByPath [ "microvm" "vms" ] { } config);
      bare = a: if isString a then head (builtins.split "/" a) else null;
      guest = type: name: gc: addrs:
        let services = tryOr [ ] (declaredServices gc);
        in {
          inherit name type services;
          addresses = filter isString addrs;
          domains = tryOr [ ] (domainsOf gc);
          state_dirs = tryOr { } (stateDirsOf gc services);
        };
      container = n: c: guest "container" n (c.config or { })
        (tryOr [ ] [ (bare (c.localAddress or null)) (bare (c.localAddress6 or null)) ]);
      # microvm.nix keeps the guest's evaluated system in evaluatedConfig
      # (declarative MicroVMs), else the module given as config.
      vm = n: v: guest "microvm" n (tryOr { } (v.evaluatedConfig.config or (v.config.config or { }))) [ ];
    in
    sort (a: b: a.name < b.name)
      (map (n: container n containers.${n}) (attrNames containers) ++ map (n: vm n vms.${n}) (attrNames vms));

  # containerServices config: per NixOS container with services, the units
  # its own configuration declares: the systemd producer's machines, read
  # through machined (systemctl -M). MicroVMs are not machined's.
  containerServices = config: listToAttrs (map (g: { name = g.name; value = g.services; })
    (filter (g: g.type == "container" && g.services != [ ]) (tryOr [ ] (guestsOf config))));

  hostOf = name: c:
    let
      config = c.config or { };
      deployment = deploymentDefaults // stripModule (attrByPath [ "pinkie" "deployment" ] { } config);
      enabledAt = p: tryOr false (attrByPath (p ++ [ "enable" ]) false config);
      agent = attrByPath [ "services" "pinkie" "agent" ] { } config;
      agentOn = tryOr false (agent.enable or false);
      services = declaredServices config;
    in
    {
      inherit deployment;
      system = tryOr null (c.pkgs.stdenv.hostPlatform.system or null);
      roles = optional (enabledAt [ "services" "pinkie" "hub" ]) "hub"
        ++ optional agentOn "agent"
        ++ optional (agentOn && tryOr false (agent.builder.enable or false)) "builder";
      agentName = if agentOn then tryOr null (agent.name or null) else null;
      inherit services;
      domains = domainsOf config;
      state_dirs = tryOr { } (stateDirsOf config services);
      guests = tryOr [ ] (guestsOf config);
    };

  # fleetProblems hosts: what no single host's assertions can see.
  fleetProblems = hosts:
    concatLists (map
      (n:
        let h = hosts.${n}; b = h.deployment.buildOn;
        in
        optional (!validName n)
          "nixosConfigurations.${n}: ${show n} is not a valid pinkie host name (letters, digits, '-', '_'; no dots)."
        ++ optional (b != null && !elem b [ "local" "target" ] && !(hosts ? ${b}))
          "nixosConfigurations.${n}: pinkie.deployment.buildOn = ${show b}, but there is no host ${show b} in nixosConfigurations."
        ++ optional (b != null && hosts ? ${b} && b != n && !elem "builder" hosts.${b}.roles)
          "nixosConfigurations.${n}: pinkie.deployment.buildOn = ${show b}, but ${b}'s agent does not have the builder role: set services.pinkie.agent.builder.enable = true on ${b}."
        ++ optional (h.agentName != null && h.agentName != n)
          "nixosConfigurations.${n}: its agent calls itself ${show h.agentName} (services.pinkie.agent.name), so deploy requests for ${show n} would never reach it: name the configuration after the host, or set services.pinkie.agent.name = ${show n}.")
      (attrNames hosts));

  # fleet nixosConfigurations renders the whole fleet as one JSON-ready
  # value: per host its deployment options, roles, services and domains,
  # plus the problems found across hosts. `pinkie fleet sync` publishes it.
  fleet = configurations:
    let hosts = mapAttrs hostOf configurations;
    in { version = 1; inherit hosts; problems = fleetProblems hosts; };

in
{
  inherit
    namePattern tagPattern validName splitAddress isLoopbackHost urlHost producerNames goals
    deploymentDefaults secretLiterals hubProblems hubArgs hubConfig hubFirewallPorts
    hubClusterProblems hubClusterArgs hubClusterFirewallPorts
    agentProblems agentConfig agentArgs fileStoreDir deploymentProblems postgresAccessProblems
    declaredServices stateDirsOf domainsOf containerServices fleet;
}
