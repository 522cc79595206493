// Zod's core with `locales` empty: see zod-classic.js.
export * from '../../node_modules/zod/v4/core/index.js';
export const locales = {};
