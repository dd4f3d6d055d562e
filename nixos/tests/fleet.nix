# The NixOS VM test: a hub and two agents, each on its own VM, configured
# only through pinkie's module (services.pinkie.*). It checks that
#   - the hub runs as a dynamic user and the agents as root with a bounded
#     capability set, as the module says;
#   - both agents' events reach the hub (its metrics count their
#     heartbeats, `pinkie tail` shows them live);
#   - a deploy runs: an operator requests that alpha activate its
#     specialisation "next" (a system with a marker file and a changed agent
#     unit); the agent activates it, the marker appears, the DEPLOY stream
#     records pinkie.deploy.alpha.activated, and the agent is still running
#     after a switch that changed its own unit;
#   - a reader key cannot request a deploy.
#
# Run it where nixpkgs and KVM are available:
#   nix build .#checks.x86_64-linux.vm -L
# It cannot run on pinkie's CI machine (no nixpkgs); docs/nixos.md says what
# is verified there instead.
{ pkgs, module }:
let
  keys = ./keys;
  auth = builtins.fromJSON (builtins.readFile (keys + "/auth.json"));
  client = "--server nats://127.0.0.1:4222 --nkey /etc/pinkie/operator.nk";

  agent = name: { ... }: {
    imports = [ module ];
    services.pinkie.agent = {
      enable = true;
      hubs = [ "nats-leaf://hub:7422" ];
      nkeyFile = "/etc/pinkie/${name}.nk";
      heartbeat = "2s";
    };
    # A real host gets its seed from agenix or sops-nix; a copied /etc file
    # (mode set, so not a store symlink) stands in for it here.
    environment.etc."pinkie/${name}.nk" = { source = keys + "/hosts/${name}.nk"; mode = "0400"; };
    pinkie.deployment = {
      tags = [ "test" ];
      buildOn = "target";
      healthChecks = [ "systemctl is-active pinkie-agent.service" ];
    };
    # What the deploy activates: this system plus a marker file, with the
    # agent's own unit changed (its log level), which must not stop it.
    specialisation.next.configuration = {
      environment.etc."pinkie-deployed".text = "next\n";
      services.pinkie.agent.logLevel = "debug";
    };
    virtualisation.memorySize = 1024;
  };
in
pkgs.testers.runNixOSTest {
  name = "pinkie-fleet";

  nodes = {
    hub = { ... }: {
      imports = [ module ];
      services.pinkie.hub = {
        enable = true;
        listen.leaf = ":7422";
        inherit auth;
        openFirewall = true;
      };
      pinkie.deployment.requireExplicit = true;
      environment.systemPackages = [ pkgs.curl pkgs.natscli ];
      environment.etc."pinkie/operator.nk" = { source = keys + "/operator.nk"; mode = "0400"; };
      environment.etc."pinkie/reader.nk" = { source = keys + "/reader.nk"; mode = "0400"; };
    };
    alpha = agent "alpha";
    beta = agent "beta";
  };

  testScript = ''
    start_all()

    hub.wait_for_unit("pinkie-hub.service")
    hub.wait_for_open_port(4222)
    hub.wait_for_open_port(7422)
    hub.wait_for_open_port(8080)
    with subtest("the hub runs as a dynamic user"):
        hub.succeed("test \"$(systemctl show -p DynamicUser --value pinkie-hub)\" = yes")
        hub.fail("test \"$(ps -o user= -p $(systemctl show -p MainPID --value pinkie-hub))\" = root")

    for m in [alpha, beta]:
        m.wait_for_unit("pinkie-agent.service")

    with subtest("the agent keeps only the capabilities it needs"):
        caps = alpha.succeed("systemctl show -p CapabilityBoundingSet --value pinkie-agent")
        assert "cap_sys_rawio" in caps and "cap_sys_admin" in caps, caps
        assert "cap_dac_override" not in caps and "cap_setuid" not in caps, caps
        alpha.succeed("test \"$(systemctl show -p KillMode --value pinkie-agent)\" = process")

    with subtest("both agents' events reach the hub"):
        for name in ["alpha", "beta"]:
            hub.wait_until_succeeds(
                "curl -fsS http://127.0.0.1:8080/metrics"
                f" | grep -E 'pinkie_events_ingested_total\\{{host=\"{name}\",kind=\"heartbeat\"\\}} [1-9]'",
                timeout=120,
            )
            hub.succeed(f"timeout 60 pinkie tail ${client} --count 1 'host.{name}.heartbeat'")

    with subtest("a reader key cannot request a deploy"):
        hub.fail("pinkie pub deploy.requested host=alpha --server nats://127.0.0.1:4222 --nkey /etc/pinkie/reader.nk --timeout 10s")

    with subtest("a deploy runs and the agent survives it"):
        alpha.fail("test -e /etc/pinkie-deployed")
        next_system = alpha.succeed("readlink -f /run/current-system/specialisation/next").strip()
        hub.succeed(
            f"pinkie pub deploy.requested host=alpha store_path={next_system} goal=test ${client}"
        )
        alpha.wait_until_succeeds("grep -qx next /etc/pinkie-deployed", timeout=300)
        hub.wait_until_succeeds(
            "nats ${client} stream subjects DEPLOY | grep -q 'pinkie.deploy.alpha.activated'",
            timeout=300,
        )
        hub.fail("nats ${client} stream subjects DEPLOY | grep -Eq 'pinkie.deploy.alpha.(failed|rolledback)'")
        alpha.succeed("systemctl is-active pinkie-agent.service")
        # beta was not asked and did not change.
        beta.fail("test -e /etc/pinkie-deployed")
  '';
}
