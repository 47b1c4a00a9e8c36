// Validates Kubernetes manifests offline against the API schemas of npm's
// kubernetes-models. Input (stdin): YAML, one or more documents. Output
// (stdout): one JSON line per document {kind, name, ok, error}. Exit 0 when
// every document is valid, 1 otherwise, 2 on a usage or parse error.
// Run with NODE_PATH pointing at the node_modules of `npm install
// kubernetes-models yaml` (test/integration/k8s/npm-install.sh).
"use strict";
const fs = require("fs");
const YAML = require("yaml");

function modelFor(apiVersion, kind) {
  if (typeof apiVersion !== "string" || typeof kind !== "string") return null;
  // "v1" -> kubernetes-models/v1, "apps/v1" -> kubernetes-models/apps/v1
  const mod = "kubernetes-models/" + apiVersion + "/" + kind;
  try {
    return require(mod)[kind];
  } catch (e) {
    return null;
  }
}

const text = fs.readFileSync(0, "utf8");
const docs = YAML.parseAllDocuments(text);
let bad = 0;
for (const d of docs) {
  if (d.errors.length) {
    console.log(JSON.stringify({ ok: false, error: "YAML: " + d.errors[0].message }));
    bad++;
    continue;
  }
  const obj = d.toJS();
  if (obj === null || obj === undefined) continue;
  const meta = obj.metadata || {};
  const out = { kind: obj.kind, name: meta.name, ok: true };
  const Model = modelFor(obj.apiVersion, obj.kind);
  if (!Model) {
    out.ok = false;
    out.error = "no schema for apiVersion " + obj.apiVersion + " kind " + obj.kind;
  } else {
    try {
      new Model(obj).validate();
    } catch (e) {
      out.ok = false;
      out.error = String(e.message || e);
    }
  }
  if (!out.ok) bad++;
  console.log(JSON.stringify(out));
}
if (docs.length === 0) {
  console.log(JSON.stringify({ ok: false, error: "no documents" }));
  process.exit(2);
}
process.exit(bad ? 1 : 0);
