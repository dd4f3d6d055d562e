# A stand-in for a flake's nixosConfigurations, shaped as the fleet export
# reads it (each host's `config` and `pkgs`), with only the attributes the
# export looks at. tests/nix_test.go evaluates nixos/lib.nix's `fleet` over
# it with a real `nix eval` (no nixpkgs needed) and compares the result
# with fake-fleet.json. It covers: nginx and caddy virtual hosts, TLS
# detection, names a dashboard cannot link to, listed and well-known
# services, roles, a host that does not import pinkie's module, a host
# whose web server configuration fails to evaluate, proxy upstreams, state
# directories, a NixOS container and a MicroVM with their own services.
let
  linux = { stdenv.hostPlatform.system = "x86_64-linux"; };
  arm = { stdenv.hostPlatform.system = "aarch64-linux"; };
  deployment = d: {
    tags = [ ];
    buildOn = null;
    targetHost = null;
    requireExplicit = false;
    goal = "switch";
    healthChecks = [ ];
  } // d;
in
{
  web1 = {
    pkgs = linux;
    config = {
      pinkie.deployment = deployment {
        tags = [ "web" "eu" ];
        buildOn = "builder";
        healthChecks = [ "curl -fsS http://127.0.0.1/healthz" ];
      };
      pinkie.fleet.services = [ "php-fpm-shop" "backup.timer" ];
      services.pinkie.agent = { enable = true; name = "web1"; builder.enable = false; };
      services.nginx = {
        enable = true;
        virtualHosts = {
          "shop.example.org" = { forceSSL = true; enableACME = true; serverAliases = [ "www.shop.example.org" ];
            locations = { "/".proxyPass = "http://10.233.1.2:8080"; "/static".root = "/srv/static"; "/api".proxyPass = "http://unix:/run/shop.sock"; }; };
          "intranet.lan" = { };
          "_" = { default = true; };
          "localhost" = { };
          "legacy" = { serverName = "old.example.org"; addSSL = true; useACMEHost = "example.org"; };
        };
      };
      services.openssh.enable = true;
      systemd.services.php-fpm-shop.serviceConfig.StateDirectory = "shop shop-cache";
      systemd.services.nginx.serviceConfig.StateDirectory = [ "nginx" ];
      # A NixOS container: its config is its evaluated NixOS configuration.
      containers.shop = {
        localAddress = "10.233.1.2/24";
        config = {
          services.postgresql.enable = true;
          pinkie.fleet.services = [ "shop-worker" ];
          systemd.services.shop-worker.serviceConfig.StateDirectory = "shop-worker";
          services.nginx = { enable = true; virtualHosts."inner.example.org" = { }; };
        };
      };
      # A microvm.nix MicroVM, its system evaluated.
      microvm.vms.mail.evaluatedConfig.config = { pinkie.fleet.services = [ "postfix" ]; };
    };
  };

  web2 = {
    pkgs = arm;
    config = {
      pinkie.deployment = deployment { tags = [ "web" "us" ]; buildOn = "target"; targetHost = "203.0.113.7"; };
      services.pinkie.agent = { enable = true; name = "web2"; builder.enable = false; };
      services.caddy = {
        enable = true;
        virtualHosts = {
          "blog.example.net" = { serverAliases = [ "www.blog.example.net" ]; extraConfig = "encode gzip\nreverse_proxy 10.0.0.5:2368 10.0.0.6:2368\n"; };
          "status" = { hostName = "http://status.example.net, status.example.com"; };
          ":8080" = { };
        };
      };
    };
  };

  builder = {
    pkgs = linux;
    config = {
      pinkie.deployment = deployment { tags = [ "infra" ]; requireExplicit = true; goal = "boot"; };
      services.pinkie.agent = { enable = true; name = "builder"; builder.enable = true; };
      services.pinkie.hub.enable = true;
      services.postgresql.enable = true;
      # Enabled, but its virtual hosts cannot be evaluated: the export
      # reports no domains for it instead of failing.
      services.nginx = { enable = true; virtualHosts = throw "broken nginx configuration"; };
    };
  };

  # A host that does not import pinkie's module: defaults, no roles.
  plain = {
    pkgs = linux;
    config = { services.nginx.enable = false; };
  };
}
