import { describe, expect, it } from 'vitest';
import { KeyringError, keyIdOf, keyringOf, parseExecutionKeys, TaskTokenSigner } from '#engine/tokens.ts';

const SECRET_A = 'secret-a-0123456789abcdef0123456789';
const SECRET_B = 'secret-b-0123456789abcdef0123456789';
const grant = { dagId: 'etl', runId: 'r1', taskId: 'extract', mapIndex: -1, tryNumber: 1 };

describe('parseExecutionKeys', () => {
  it('reads one bare secret as the key default', () => {
    expect(parseExecutionKeys(`${SECRET_A}\n`)).toEqual(new Map([['default', SECRET_A]]));
  });

  it('reads kid=secret lines in order, the first one signing', () => {
    const keys = parseExecutionKeys(`# rotated 2026-01\nk2=${SECRET_B}\n\nk1=${SECRET_A}\n`);
    expect([...keys]).toEqual([
      ['k2', SECRET_B],
      ['k1', SECRET_A],
    ]);
  });

  it('refuses a short secret without repeating it', () => {
    expect(() => parseExecutionKeys(`k1=${SECRET_A}\nk2=short`)).toThrow(
      new KeyringError('key "k2" (line 2) is shorter than 32 characters'),
    );
  });

  it('keeps the order written for key ids that are numbers, which an object would sort', () => {
    expect([...parseExecutionKeys(`2=${SECRET_B}\n1=${SECRET_A}`).keys()]).toEqual(['2', '1']);
    expect([...parseExecutionKeys(`20260601=${SECRET_B}\n20260101=${SECRET_A}`).keys()]).toEqual([
      '20260601',
      '20260101',
    ]);
  });

  it('refuses a key id given twice', () => {
    expect(() => parseExecutionKeys(`k1=${SECRET_A}\nk1=${SECRET_B}`)).toThrow(/appears twice/);
  });
});

describe('keyringOf', () => {
  it('keeps the order given and checks ids, lengths and duplicates, naming no secret', () => {
    expect([
      ...keyringOf([
        ['9', SECRET_B],
        ['10', SECRET_A],
      ]).keys(),
    ]).toEqual(['9', '10']);
    expect(() => keyringOf([['k1', 'short']])).toThrow(
      new KeyringError('key "k1" is shorter than 32 characters'),
    );
    expect(() =>
      keyringOf([
        ['k1', SECRET_A],
        ['k1', SECRET_B],
      ]),
    ).toThrow(/appears twice/);
    // A secret pasted where the key id goes is not repeated.
    expect(() => keyringOf([[`${SECRET_A}!`, SECRET_B]])).toThrow(
      new KeyringError('A key id does not match /^[A-Za-z0-9_.-]{1,64}$/'),
    );
    expect(() => keyringOf([])).toThrow(/no key/);
  });
});

describe('TaskTokenSigner', () => {
  it('signs with the first key and names it in the header', async () => {
    const token = await new TaskTokenSigner({ k2: SECRET_B, k1: SECRET_A }, 600).issue(grant, 0);
    const header = JSON.parse(Buffer.from(token.split('.')[0] ?? '', 'base64url').toString());
    expect(header).toEqual({ alg: 'HS256', typ: 'JWT', kid: 'k2' });
  });

  it('signs with the key written first, also when key ids are numbers', async () => {
    const token = await new TaskTokenSigner(parseExecutionKeys(`2=${SECRET_B}\n1=${SECRET_A}`), 600).issue(
      grant,
      0,
    );
    expect(keyIdOf(token)).toBe('2');
  });

  it('refuses an object of several keys with a key id that is a number, whose order is lost', () => {
    expect(() => new TaskTokenSigner({ '2': SECRET_B, '1': SECRET_A }, 600)).toThrow(
      /Key id "1" is a number.*give the keyring as a Map/,
    );
    expect(() => new TaskTokenSigner({ '1': SECRET_A }, 600)).not.toThrow();
  });

  it('reads the key id of a token without checking it, and nothing from what is not a token', async () => {
    const token = await new TaskTokenSigner({ k7: SECRET_A }, 600).issue(grant, 0);
    expect(keyIdOf(token)).toBe('k7');
    expect(keyIdOf('not-a-token')).toBeUndefined();
    expect(keyIdOf(`${Buffer.from('{"alg":"none"}').toString('base64url')}.e30.x`)).toBeUndefined();
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
