// Zod's classic API with `locales` and `core` replaced. Files, not `zod/...` subpaths: the alias
// of `zod` would send those back here. A local export wins over the same name from `export *`.
import * as core from './zod-core.js';

export * from '../../node_modules/zod/v4/classic/external.js';
export const locales = {};
export { core };
