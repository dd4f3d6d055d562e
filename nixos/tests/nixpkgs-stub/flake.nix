# A stand-in for nixpkgs, for tests/nix_test.go on a machine without it: just
# enough (a few lib functions, callPackage, a buildGoModule and a
# testers.runNixOSTest that return their arguments) to evaluate pinkie's
# flake outputs and read what they pass on. It builds nothing.
{
  outputs = _:
    let
      hasPrefix = p: s: builtins.substring 0 (builtins.stringLength p) s == p;
      hasSuffix = x: s:
        let ls = builtins.stringLength s; lx = builtins.stringLength x;
        in ls >= lx && builtins.substring (ls - lx) lx s == x;
      lib = {
        inherit hasPrefix hasSuffix;
        removePrefix = p: s: if hasPrefix p s then builtins.substring (builtins.stringLength p) (builtins.stringLength s) s else s;
        cleanSource = src: src;
        cleanSourceWith = { src, filter }: { inherit src filter; outPath = "/nix/store/00000000000000000000000000000000-source"; };
        platforms = { linux = [ "x86_64-linux" "aarch64-linux" ]; darwin = [ "x86_64-darwin" "aarch64-darwin" ]; };
      };
      pkgsFor = system: rec {
        inherit lib system;
        buildGoModule = args: args // { outPath = "/nix/store/00000000000000000000000000000000-${args.pname}-${args.version}"; };
        callPackage = f: args: (import f) ({ inherit lib buildGoModule; } // args);
        testers.runNixOSTest = test: test;
      };
      systems = [ "x86_64-linux" "aarch64-linux" "x86_64-darwin" "aarch64-darwin" ];
    in
    {
      inherit lib;
      legacyPackages = builtins.listToAttrs (map (s: { name = s; value = pkgsFor s; }) systems);
    };
}
