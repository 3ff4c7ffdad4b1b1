// Validate an AsyncAPI document with the official parser (@asyncapi/parser, installed into
// .tools/ by tests/setup-tools.sh). Prints the diagnostics as JSON on stdout, one array;
// exits 1 when any has error severity (0), 2 when the file cannot be read.
//   node tests/support/asyncapi_validate.js schemas/asyncapi.yaml
"use strict";
const fs = require("fs");
const path = require("path");

const TOOLS = process.env.CONVEYOR_TOOLS_DIR || path.resolve(__dirname, "..", "..", ".tools");
const { Parser } = require(path.join(TOOLS, "node_modules", "@asyncapi", "parser"));
const SEVERITY = ["error", "warning", "information", "hint"];

async function main(file) {
  let text;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (err) {
    console.error(`asyncapi_validate: cannot read ${file}: ${err.message}`);
    return 2;
  }
  const { document, diagnostics } = await new Parser().parse(text, { source: path.resolve(file) });
  const shown = diagnostics.map((d) => ({
    severity: SEVERITY[d.severity] || String(d.severity),
    code: d.code,
    message: d.message,
    path: d.path.join("/"),
  }));
  console.log(JSON.stringify(shown, null, 2));
  return document === undefined || shown.some((d) => d.severity === "error") ? 1 : 0;
}

main(process.argv[2] || "schemas/asyncapi.yaml").then(
  (code) => process.exit(code),
  (err) => { console.error(err.stack || String(err)); process.exit(2); },
);
