# The NixOS options pinkie's modules set or read, declared with NixOS's
# types, for evaluating the modules under nixpkgs' real module system
# (lib.evalModules) without the rest of NixOS: see eval.nix. The types
# follow nixpkgs' declarations (nixos/lib/systemd-unit-options.nix for
# units, nixos/modules/services/databases/postgresql.nix,
# nixos/modules/config/users-groups.nix, …) closely enough that a wrong
# type, a conflicting definition or a misspelt sub-option fails here as it
# would in a real system build; options nobody here inspects (containers,
# microvm.vms, wg-quick interfaces) are loose attribute sets.
#
# A module that sets a NixOS option not declared here fails with "The
# option `…' does not exist": declare it (with its NixOS type) when a
# module starts using one.
{ lib, ... }:
let
  inherit (lib) mkOption types;

  # systemd unit names as NixOS checks them (unitNameType).
  unitName = types.strMatching "[a-zA-Z0-9@%:_.\\-]+[.](service|socket|device|mount|automount|swap|target|path|timer|scope|slice)";

  # A value in a unit section ([Service] ExecStart=…): definitions are all
  # lists (concatenated: repeatable settings) or all single values (which
  # must agree), after mkForce/mkOverride filtering, as NixOS's unitOption.
  unitOption = lib.mkOptionType {
    name = "systemd option";
    merge = loc: defs:
      let defs' = lib.filterOverrides defs;
      in
      if builtins.isList (builtins.head defs').value then
        lib.concatMap
          (d: if builtins.isList d.value then d.value
            else throw "The definitions of the systemd unit option `${lib.showOption loc}' mix lists and single values.")
          defs'
      else lib.mergeEqualOption loc defs';
  };
  section = mkOption { type = types.attrsOf unitOption; default = { }; };
  units = mkOption { type = types.listOf unitName; default = [ ]; };

  # What every unit has (commonUnitOptions and stage 2's).
  unitModule = {
    options = {
      enable = mkOption { type = types.bool; default = true; };
      description = mkOption { type = types.singleLineStr; default = ""; };
      documentation = mkOption { type = types.listOf types.str; default = [ ]; };
      wantedBy = units;
      requiredBy = units;
      requires = units;
      wants = units;
      after = units;
      before = units;
      bindsTo = units;
      partOf = units;
      conflicts = units;
      onFailure = units;
      unitConfig = section;
      restartTriggers = mkOption { type = types.listOf types.unspecified; default = [ ]; };
    };
  };

  serviceModule = {
    imports = [ unitModule ];
    options = {
      environment = mkOption { type = types.attrsOf (types.nullOr (types.oneOf [ types.str types.path types.package ])); default = { }; };
      path = mkOption { type = types.listOf (types.oneOf [ types.package types.str ]); default = [ ]; };
      serviceConfig = section;
      script = mkOption { type = types.lines; default = ""; };
      preStart = mkOption { type = types.lines; default = ""; };
      postStart = mkOption { type = types.lines; default = ""; };
      restartIfChanged = mkOption { type = types.bool; default = true; };
      reloadIfChanged = mkOption { type = types.bool; default = false; };
      stopIfChanged = mkOption { type = types.bool; default = true; };
      startAt = mkOption { type = types.either types.str (types.listOf types.str); default = [ ]; };
    };
  };

  pathModule = { imports = [ unitModule ]; options.pathConfig = section; };
  timerModule = { imports = [ unitModule ]; options.timerConfig = section; };

  userModule = { name, ... }: {
    options = {
      name = mkOption { type = types.str; default = name; };
      description = mkOption { type = types.str; default = ""; };
      isNormalUser = mkOption { type = types.bool; default = false; };
      isSystemUser = mkOption { type = types.bool; default = false; };
      uid = mkOption { type = types.nullOr types.int; default = null; };
      group = mkOption { type = types.str; default = ""; };
      extraGroups = mkOption { type = types.listOf types.str; default = [ ]; };
      home = mkOption { type = types.path; default = "/var/empty"; };
      createHome = mkOption { type = types.bool; default = false; };
    };
  };

  etcModule = { name, ... }: {
    options = {
      enable = mkOption { type = types.bool; default = true; };
      target = mkOption { type = types.str; default = name; };
      text = mkOption { type = types.nullOr types.lines; default = null; };
      source = mkOption { type = types.nullOr types.path; default = null; };
      mode = mkOption { type = types.str; default = "symlink"; };
      user = mkOption { type = types.str; default = "+0"; };
      group = mkOption { type = types.str; default = "+0"; };
    };
  };

  enable = mkOption { type = types.bool; default = false; };
  fake = name: { type = "derivation"; inherit name; outPath = "/nix/store/00000000000000000000000000000000-${name}"; };
  package = name: mkOption { type = types.package; default = fake name; };
in
{
  options = {
    assertions = mkOption {
      type = types.listOf types.unspecified;
      default = [ ];
      description = "As NixOS's: { assertion; message; } pairs checked when the system is built.";
    };
    warnings = mkOption { type = types.listOf types.str; default = [ ]; };

    networking = {
      # NixOS's check: an RFC 1123 label.
      hostName = mkOption { type = types.strMatching "^$|^[[:alnum:]]([[:alnum:]_-]{0,61}[[:alnum:]])?$"; default = "nixos"; };
      firewall = {
        enable = mkOption { type = types.bool; default = true; };
        allowedTCPPorts = mkOption { type = types.listOf types.port; default = [ ]; };
        allowedUDPPorts = mkOption { type = types.listOf types.port; default = [ ]; };
      };
      wireguard.enable = enable;
      wg-quick.interfaces = mkOption { type = types.attrsOf types.anything; default = { }; };
    };

    boot.zfs = {
      enabled = mkOption { type = types.bool; default = false; readOnly = true; };
      package = package "zfs";
    };

    nix.package = package "nix";

    environment = {
      systemPackages = mkOption { type = types.listOf types.package; default = [ ]; };
      etc = mkOption { type = types.attrsOf (types.submodule etcModule); default = { }; };
    };

    users.users = mkOption { type = types.attrsOf (types.submodule userModule); default = { }; };
    users.groups = mkOption { type = types.attrsOf (types.submodule { options.gid = mkOption { type = types.nullOr types.int; default = null; }; }); default = { }; };

    systemd = {
      package = package "systemd";
      services = mkOption { type = types.attrsOf (types.submodule serviceModule); default = { }; };
      paths = mkOption { type = types.attrsOf (types.submodule pathModule); default = { }; };
      timers = mkOption { type = types.attrsOf (types.submodule timerModule); default = { }; };
      tmpfiles.rules = mkOption { type = types.listOf types.str; default = [ ]; };
    };

    services = {
      fail2ban = { enable = enable; package = package "fail2ban"; };
      openssh.enable = enable;
      httpd.enable = enable;
      mysql.enable = enable;

      # nixpkgs' postgresql module: identMap and authentication are lines
      # (definitions joined; mkBefore/mkAfter order them), ensureUsers a list
      # of submodules.
      postgresql = {
        enable = enable;
        package = package "postgresql-17";
        identMap = mkOption { type = types.lines; default = ""; };
        authentication = mkOption { type = types.lines; default = ""; };
        ensureDatabases = mkOption { type = types.listOf types.str; default = [ ]; };
        ensureUsers = mkOption {
          type = types.listOf (types.submodule {
            options = {
              name = mkOption { type = types.str; };
              ensureDBOwnership = mkOption { type = types.bool; default = false; };
              ensureClauses = mkOption {
                type = types.submodule {
                  options = lib.genAttrs [ "superuser" "createrole" "createdb" "inherit" "login" "replication" "bypassrls" ]
                    (_: mkOption { type = types.nullOr types.bool; default = null; });
                };
                default = { };
              };
            };
          });
          default = [ ];
        };
        settings = mkOption { type = types.attrsOf (types.oneOf [ types.bool types.float types.int types.str ]); default = { }; };
      };

      nginx = {
        enable = enable;
        virtualHosts = mkOption {
          type = types.attrsOf (types.submodule {
            options = {
              serverName = mkOption { type = types.nullOr types.str; default = null; };
              serverAliases = mkOption { type = types.listOf types.str; default = [ ]; };
              forceSSL = mkOption { type = types.bool; default = false; };
              onlySSL = mkOption { type = types.bool; default = false; };
              addSSL = mkOption { type = types.bool; default = false; };
              enableACME = mkOption { type = types.bool; default = false; };
              useACMEHost = mkOption { type = types.nullOr types.str; default = null; };
              extraConfig = mkOption { type = types.lines; default = ""; };
              locations = mkOption {
                type = types.attrsOf (types.submodule {
                  options = {
                    proxyPass = mkOption { type = types.nullOr types.str; default = null; };
                    root = mkOption { type = types.nullOr types.path; default = null; };
                    extraConfig = mkOption { type = types.lines; default = ""; };
                  };
                });
                default = { };
              };
            };
          });
          default = { };
        };
      };

      caddy = {
        enable = enable;
        virtualHosts = mkOption {
          type = types.attrsOf (types.submodule ({ name, ... }: {
            options = {
              hostName = mkOption { type = types.str; default = name; };
              serverAliases = mkOption { type = types.listOf types.str; default = [ ]; };
              extraConfig = mkOption { type = types.lines; default = ""; };
            };
          }));
          default = { };
        };
      };
    };

    # Guests: NixOS containers (their config is a NixOS configuration of its
    # own) and microvm.nix MicroVMs, loose here: the fleet export reads them.
    containers = mkOption { type = types.attrsOf types.anything; default = { }; };
    microvm.vms = mkOption { type = types.attrsOf types.anything; default = { }; };
  };
}
