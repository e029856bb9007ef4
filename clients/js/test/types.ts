// Compile-time test of index.d.ts: typical app code must type-check, misuse must not.
import { createClient, sessionStorageAdapter, VestibuleError, type User, type VestibuleClient } from '../src/index.js';
import type { LinkedIdentity } from '../src/index.js';

const client: VestibuleClient = createClient({
  baseUrl: 'http://localhost:8000',
  transport: 'cookie',
  onUnauthenticated: (err) => {
    const status: number = err.status;
    const code: string = err.code;
    void status;
    void code;
  },
});
const bearer = createClient({ transport: 'bearer', storage: sessionStorageAdapter('k') });

export async function usage(): Promise<void> {
  const answer = await client.login({ username: 'ada', password: 'correct horse' });
  const user: User = 'mfa_required' in answer ? await client.mfa.totp('123456') : answer;
  const codes: string[] = await client.totp.confirm('123456');
  const svg: string = (await client.totp.enroll()).qr_svg;
  const passkey = await client.passkeys.register({ name: 'laptop' });
  const passkeyId: number = passkey.id;
  const firstCodes: string[] | undefined = passkey.recovery_codes;
  const left: number = (await client.mfa.status()).recovery_codes_left;
  const regenerated: string[] = await client.mfa.regenerateRecoveryCodes();
  void [codes, svg, passkeyId, firstCodes, left, regenerated];
  const me: User | null = await client.me();
  const sessions = await client.sessions.list();
  const browser: string | null = sessions[0].browser;
  void browser;
  const current: boolean | undefined = sessions[0]?.current;
  const created = await client.tokens.create({ name: 'ci', scopes: ['read', 'write'], expiresInDays: 7 });
  const secret: string = created.token;
  await client.tokens.revoke(created.id);
  const res: Response = await client.fetch('/api/notes', { method: 'POST', body: '{}' });
  const notes = await client.request<{ notes: string[] }>('/api/notes', { signal: AbortSignal.timeout(1000) });
  const first: string | undefined = notes.notes[0];
  const token: string | null = bearer.getToken();
  try {
    const changed = await client.changePassword({ currentPassword: 'a', newPassword: 'b' });
    const endedSessions: number | null = changed.ended.sessions;
    const endedTokens: number = changed.ended.access_tokens;
    const changedName: string = changed.user.username;
    void [endedSessions, endedTokens, changedName];
  } catch (e) {
    if (e instanceof VestibuleError) {
      const hint: string = e.hint;
      void hint;
    }
  }
  void [user, me, current, secret, res, first, token];

  const linked: LinkedIdentity[] = await client.identities.list();
  await client.identities.unlink(linked[0]?.id ?? 1);
  const linkUrl: string = await client.oidc.link('google', { returnTo: '/settings', navigate: false });
  void linkUrl;

  // @ts-expect-error transport is 'cookie' or 'bearer'
  createClient({ transport: 'jwt' });
  // @ts-expect-error scopes are 'read' | 'write'
  await client.tokens.create({ name: 'x', scopes: ['admin'] });
  // @ts-expect-error login may answer MfaRequired: not assignable to User
  const unchecked: User = await client.login({ username: 'ada', password: 'x' });
  void unchecked;
  // @ts-expect-error status() is the factors, not the codes
  const notCodes: string[] = await client.mfa.status();
  void notCodes;
  // @ts-expect-error changePassword takes camelCase fields
  await client.changePassword({ current_password: 'a', new_password: 'b' });
}
