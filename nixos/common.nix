# What the hub and agent modules share: the package.
{ config, lib, pkgs, ... }:
{
  options.services.pinkie.package = lib.mkOption {
    type = lib.types.package;
    default = pkgs.pinkie or (throw "services.pinkie.package is not set and nixpkgs has no pinkie: import pinkie's flake module (pinkie.nixosModules.default), which sets it, or set services.pinkie.package.");
    defaultText = lib.literalExpression "pinkie.packages.\${system}.default (set by the flake's module)";
    description = "The pinkie package the hub and the agent run.";
  };
}
