// `node:https` without an ES-module import: see lib/bundling.ts (CJS_BUILTIN_ALIASES). Not
// `require('node:https')`: the bundler would alias that to this very file.
module.exports = process.getBuiltinModule('node:https');
