import { describe, expect, it } from 'vitest';
import { KeyringError, parseExecutionKeys, TaskTokenSigner } from '#engine/tokens.ts';

const SECRET_A = 'secret-a-0123456789abcdef0123456789';
const SECRET_B = 'secret-b-0123456789abcdef0123456789';
const grant = { dagId: 'etl', runId: 'r1', taskId: 'extract', mapIndex: -1, tryNumber: 1 };

describe('parseExecutionKeys', () => {
  it('reads one bare secret as the key default', () => {
    expect(parseExecutionKeys(`${SECRET_A}\n`)).toEqual({ default: SECRET_A });
  });

  it('reads kid=secret lines in order, the first one signing', () => {
    const keys = parseExecutionKeys(`# rotated 2026-01\nk2=${SECRET_B}\n\nk1=${SECRET_A}\n`);
    expect(Object.entries(keys)).toEqual([
      ['k2', SECRET_B],
      ['k1', SECRET_A],
    ]);
  });

  it('refuses a short secret without repeating it', () => {
    expect(() => parseExecutionKeys(`k1=${SECRET_A}\nk2=short`)).toThrow(
      new KeyringError('key "k2" (line 2) is shorter than 32 characters'),
    );
  });

  it('refuses a key id given twice', () => {
    expect(() => parseExecutionKeys(`k1=${SECRET_A}\nk1=${SECRET_B}`)).toThrow(/appears twice/);
  });
});

describe('TaskTokenSigner', () => {
  it('signs with the first key and names it in the header', async () => {
    const token = await new TaskTokenSigner({ k2: SECRET_B, k1: SECRET_A }, 600).issue(grant, 0);
    const header = JSON.parse(Buffer.from(token.split('.')[0] ?? '', 'base64url').toString());
    expect(header).toEqual({ alg: 'HS256', typ: 'JWT', kid: 'k2' });
  });

  it('counts the lifetime from the start it is given', async () => {
    const signer = new TaskTokenSigner(SECRET_A, 600);
    const token = await signer.issue(grant, 1_000_000);
    expect(await signer.check(token, 1_000_000)).toMatchObject({
      claims: { kind: 'task_instance', ...grant },
      issuedAtMs: 1_000_000,
      expiresAtMs: 1_600_000,
    });
  });

  it('refuses a token once it expired, even after verifying it before', async () => {
    const signer = new TaskTokenSigner(SECRET_A, 600);
    const token = await signer.issue(grant, 0);
    await signer.check(token, 1_000);
    await expect(signer.check(token, 600_000)).rejects.toThrow(/expired at 1970-01-01T00:10:00.000Z/);
  });
});
