// Zod's core with `locales` empty: see zod-classic.js.
export * from 'zod/v4/core';
export const locales = {};
