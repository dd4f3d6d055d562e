package dashboard

// The web terminal's assets: xterm.js (npm @xterm/xterm, pinned in
// web/package.json and web/package-lock.json) bundled by esbuild into
// assets/static/term/, which is not committed and is embedded when present.
// Without it the host page says how to build it; pinkie shell works anyway.
//go:generate sh -c "cd web && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build"
