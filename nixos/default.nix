# pinkie's NixOS module: services.pinkie.hub, services.pinkie.agent and the
# pinkie.deployment / pinkie.fleet options. Without the flake, set
# services.pinkie.package yourself (the flake's nixosModules.default does).
{
  imports = [ ./common.nix ./deployment.nix ./hub.nix ./agent.nix ];
}
