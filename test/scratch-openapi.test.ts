import { writeFile } from 'node:fs/promises';
import { afterAll, beforeAll, it } from 'vitest';
import { type ApiHarness, startApiHarness } from './integration/api-harness.ts';

let api: ApiHarness;
beforeAll(async () => {
  api = await startApiHarness();
});
afterAll(async () => {
  await api?.close();
});
it('dumps the document', async () => {
  const { body } = await api.request('GET', '/api/v2/openapi.json', undefined, null);
  await writeFile(process.env.OPENAPI_OUT ?? '/tmp/openapi.json', JSON.stringify(body, null, 2));
});
