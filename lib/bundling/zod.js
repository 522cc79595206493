// `zod` for the API functions' bundles: see lib/bundling.ts (ZOD_WITHOUT_LOCALES_ALIAS). Shaped as
// zod's own index: the classic API as named exports, and as `z` and the default.
import * as z from './zod-classic.js';

export * from './zod-classic.js';
export { z, z as default };
