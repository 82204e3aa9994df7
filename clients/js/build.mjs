// `npm run build`: dist/hetu-client.js, one ES module with every dependency inside (usable
// from <script type="module"> as it is), and the type declarations next to it.
import { execFileSync } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { build } from "esbuild";

const require = createRequire(import.meta.url);

rmSync("dist", { recursive: true, force: true });
mkdirSync("dist");

await build({
  entryPoints: ["src/index.ts"],
  outfile: "dist/hetu-client.js",
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2020",
  // loaded only where there is no global WebSocket / Web Crypto, i.e. in Node
  external: ["ws", "node:crypto"],
  minify: true,
  sourcemap: true,
  legalComments: "inline",
  logLevel: "warning",
});

execFileSync(process.execPath, [require.resolve("typescript/bin/tsc"), "-p", "tsconfig.build.json"], { stdio: "inherit" });
writeFileSync("dist/hetu-client.d.ts", 'export * from "./types/index.js";\n');
console.log("built dist/hetu-client.js and its declarations");
