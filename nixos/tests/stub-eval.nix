# A smoke evaluation of pinkie's modules without nixpkgs, for
# tests/nix_test.go: a stand-in for the few nixpkgs lib functions the
# modules call, option defaults taken from their declarations, and the
# modules' `config` evaluated against them. It is not the module system (no
# type checking, no merging between modules, no priorities): it catches a
# misspelt attribute, a wrong lib call or a wrong command line in the
# modules' config sections, and lets the test read the systemd units they
# declare. The VM test (fleet.nix) runs the real thing.
#
#   import ./stub-eval.nix { module = ../hub.nix; set = { services.pinkie.hub = { enable = true; … }; }; }
{ module, set ? { }, host ? { } }:
let
  inherit (builtins) attrNames concatStringsSep filter foldl' head isAttrs isList length listToAttrs mapAttrs replaceStrings stringLength substring tail;

  recursiveUpdate = a: b:
    if isAttrs b && !(b ? _isOption) && isAttrs a
    then a // mapAttrs (n: v: if a ? ${n} then recursiveUpdate a.${n} v else v) b
    else b;

  mergeConfig = a: b:
    if isAttrs a && isAttrs b && !(b ? _isOption) then a // mapAttrs (n: v: if a ? ${n} then mergeConfig a.${n} v else v) b
    else if isList a && isList b then a ++ b
    else b;

  lib = rec {
    mkOption = o: o // { _isOption = true; };
    mkEnableOption = what: mkOption { default = false; description = "Whether to enable ${what}."; };
    mkIf = cond: v: if cond then v else { };
    mkDefault = v: v;
    mkAfter = v: v;
    mkBefore = v: v;
    # Lists concatenate, attribute sets merge; no priorities.
    mkMerge = foldl' mergeConfig { };
    literalExpression = x: x;
    types = rec {
      str = "str"; bool = "bool"; package = "package"; path = "path";
      listOf = t: "listOf"; attrsOf = t: "attrsOf"; nullOr = t: "nullOr"; oneOf = ts: "oneOf";
      enum = xs: { enum = xs; };
      submodule = m: "submodule";
      ints = { positive = "int"; unsigned = "int"; };
    };
    optional = c: x: if c then [ x ] else [ ];
    optionals = c: xs: if c then xs else [ ];
    optionalAttrs = c: a: if c then a else { };
    elem = builtins.elem;
    any = builtins.any;
    filter = builtins.filter;
    attrValues = builtins.attrValues;
    concatStringsSep = builtins.concatStringsSep;
    mapAttrsToList = f: a: map (n: f n a.${n}) (attrNames a);
    unique = foldl' (acc: x: if builtins.elem x acc then acc else acc ++ [ x ]) [ ];
    hasPrefix = p: s: substring 0 (stringLength p) s == p;
    removePrefix = p: s: if hasPrefix p s then substring (stringLength p) (stringLength s) s else s;
    hasInfix = i: s: builtins.match ".*${replaceStrings [ "." "[" "]" ] [ "\\." "\\[" "\\]" ] i}.*" s != null;
    escapeShellArg = a: "'" + replaceStrings [ "'" ] [ "'\\''" ] (toString a) + "'";
    escapeShellArgs = xs: concatStringsSep " " (map escapeShellArg xs);
    getExe' = pkg: exe: "${pkg}/bin/${exe}";
    makeBinPath = ps: concatStringsSep ":" (map (p: "${p}/bin") ps);
  };

  fakePkg = name: "/nix/store/00000000000000000000000000000000-${name}";
  pkgs = {
    formats.json = _: { type = "json"; generate = name: value: builtins.deepSeq value { outPath = fakePkg name; }; };
    coreutils = fakePkg "coreutils";
    smartmontools = fakePkg "smartmontools";
    wireguard-tools = fakePkg "wireguard-tools";
    util-linux = fakePkg "util-linux";
  };

  # Option declarations → their defaults (a nested attribute set).
  defaultsOf = opts:
    if opts ? _isOption then (opts.default or null)
    else mapAttrs (_: defaultsOf) (removeAttrs opts [ "_module" ]);

  # The host configuration the module sees: base facts, the module's own
  # option defaults, then what the test sets. Evaluated lazily, as the
  # module system does, so a module may read its own options.
  base = recursiveUpdate {
    networking.hostName = "goliath";
    services.pinkie.package = fakePkg "pinkie";
    nix.package = fakePkg "nix";
    systemd.package = fakePkg "systemd";
    boot.zfs.enabled = false;
    services.fail2ban.enable = false;
    networking.wireguard.enable = false;
    networking.wg-quick.interfaces = { };
  } host;

  # A module and the modules it imports, each once.
  call = m: let f = import m; in if builtins.isFunction f then f args else f;
  collect = seen: m:
    if builtins.elem m seen then seen
    else foldl' collect (seen ++ [ m ]) ((call m).imports or [ ]);
  modules = collect [ ] module;
  results = map call modules;

  options = foldl' recursiveUpdate { } (map (r: r.options or { }) results);
  config = recursiveUpdate (recursiveUpdate (defaultsOf options) base) set;
  args = { inherit config lib pkgs; };

  # The modules' config sections, merged (assertions concatenated).
  declared = map (r: r.config or { }) results;
  assertions = builtins.concatLists (map (c: c.assertions or [ ]) declared);
  merged = foldl' recursiveUpdate { } (map (c: removeAttrs c [ "assertions" ]) declared);
in
merged // { inherit assertions; failed = map (a: a.message) (filter (a: !a.assertion) assertions); }
