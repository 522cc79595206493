// `node:https` as a CommonJS require: see lib/bundling.ts (CJS_BUILTIN_ALIASES).
module.exports = require('node:https');
