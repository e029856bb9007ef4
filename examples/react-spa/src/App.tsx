// The whole example: sign up / log in, who am I, the notes API (a protected call through
// client.fetch), log out, and a switch between the cookie and bearer transports.
import { useCallback, useEffect, useMemo, useState, type FormEvent } from 'react';
import { createClient, VestibuleError, type MfaRequired, type Transport, type VestibuleClient } from 'vestibule-client';
import { useSession } from 'vestibule-client/react';
import { LinkedIdentities, SignInButtons } from './Identities';
import { EmailLink, ForgotPassword } from './Recovery';

/** One note, as notes-api answers (examples/notes-api). */
interface Note {
  id: number;
  text: string;
}

/** `GET /api/notes`: the notes, and whom the backend acted for. */
interface NoteList {
  user: { id: number; username: string };
  notes: Note[];
}

const TRANSPORT_KEY = 'vestibule-example-transport';

function savedTransport(): Transport {
  return localStorage.getItem(TRANSPORT_KEY) === 'bearer' ? 'bearer' : 'cookie';
}

/** The message to show for a failed call (the server's message and hint, when it sent them). */
function describe(e: unknown): string {
  if (e instanceof VestibuleError) return e.hint ? `${e.message} (${e.hint})` : e.message;
  return e instanceof Error ? e.message : String(e);
}

/** A non-2xx answer of our own API as a VestibuleError (the body is Vestibule's error format). */
async function failure(res: Response): Promise<VestibuleError> {
  const body = (await res.json().catch(() => ({}))) as { code?: string; message?: string; hint?: string };
  return new VestibuleError({
    status: res.status,
    code: body.code ?? 'http_error',
    message: body.message ?? `HTTP ${res.status}`,
    hint: body.hint ?? null,
  });
}

async function listNotes(client: VestibuleClient): Promise<NoteList> {
  const res = await client.fetch('/api/notes');
  if (!res.ok) throw await failure(res);
  return (await res.json()) as NoteList;
}

export function App() {
  const [transport, setTransport] = useState<Transport>(savedTransport);
  // A login that still needs its second factor (the account has TOTP or a passkey).
  const [pending, setPending] = useState<MfaRequired | null>(null);
  // The client whose first answer (and its notes) is in: the page is loaded for that one only.
  const [loadedFor, setLoadedFor] = useState<VestibuleClient | null>(null);
  const [busy, setBusy] = useState(false);
  const [status, setStatus] = useState('Loading…');
  const [notes, setNotes] = useState<Note[]>([]);
  const [servedTo, setServedTo] = useState<string | null>(null);

  // Same origin: baseUrl defaults to the page's origin (vestibule dev, or vestibule serve --static).
  const client = useMemo(
    () =>
      createClient({
        transport,
        // useSession sees the 401 too (the user becomes null); the page says why.
        onUnauthenticated: () => {
          setNotes([]);
          setStatus('Your session ended: log in again.');
        },
      }),
    [transport],
  );

  const refresh = useCallback(async (c: VestibuleClient) => {
    const list = await listNotes(c);
    setNotes(list.notes);
    setServedTo(list.user.username);
  }, []);

  // Who is signed in, kept current by the client: login, second factor, logout and 401s.
  const session = useSession(client);
  const { user } = session;
  const loaded = loadedFor === client && !session.loading;

  // On start and on each transport switch: once the session is known, its notes, then the page.
  useEffect(() => {
    if (session.loading) return;
    let current = true;
    (async () => {
      try {
        if (session.error) throw session.error;
        if (session.user) await refresh(client);
        else setNotes([]);
        if (current) setStatus(session.user ? `Signed in as ${session.user.username}` : 'Not signed in');
      } catch (e) {
        if (current) setStatus(describe(e));
      } finally {
        if (current) setLoadedFor(client);
      }
    })();
    return () => {
      current = false;
    };
    // Only when the first answer arrives: later changes are the actions' own.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [client, session.loading]);

  /** Runs one action at a time, with its outcome in the status line. */
  async function run(action: () => Promise<string>) {
    setBusy(true);
    try {
      setStatus(await action());
    } catch (e) {
      setStatus(describe(e));
    } finally {
      setBusy(false);
    }
  }

  function switchTransport(next: Transport) {
    localStorage.setItem(TRANSPORT_KEY, next);
    setTransport(next);
  }

  function authenticate(event: FormEvent<HTMLFormElement>, kind: 'signup' | 'login') {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const credentials = { username: String(form.get('username')), password: String(form.get('password')) };
    void run(async () => {
      const u = kind === 'signup' ? await client.signup(credentials) : await client.login(credentials);
      if ('mfa_required' in u) {
        setPending(u);
        return 'Password accepted: enter the code from your authenticator app (or a recovery code)';
      }
      if ('email_verification_required' in u) {
        return `Signed up: follow the link sent to ${u.email}, then log in`;
      }
      await refresh(client);
      return kind === 'signup' ? `Signed up as ${u.username}` : `Logged in as ${u.username}`;
    });
  }

  function secondFactor(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const code = String(new FormData(event.currentTarget).get('code')).trim();
    void run(async () => {
      // Six digits: a TOTP code; anything longer: one of the recovery codes.
      const u = /^\d{6}$/.test(code) ? await client.mfa.totp(code) : await client.mfa.recovery(code);
      setPending(null);
      await refresh(client);
      return `Logged in as ${u.username}`;
    });
  }

  function addNote(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const formElement = event.currentTarget;
    const text = String(new FormData(formElement).get('text'));
    void run(async () => {
      const res = await client.fetch('/api/notes', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ text }),
      });
      if (!res.ok) throw await failure(res);
      formElement.reset();
      await refresh(client);
      return 'Note saved';
    });
  }

  return (
    <main aria-busy={busy || !loaded} data-state={!loaded ? 'loading' : user ? 'signed-in' : 'anonymous'}>
      <header>
        <h1 id="title">Vestibule notes</h1>
        <fieldset className="transport">
          <legend>Transport</legend>
          {(['cookie', 'bearer'] as const).map((t) => (
            <label key={t}>
              <input
                type="radio"
                name="transport"
                id={`transport-${t}`}
                checked={transport === t}
                disabled={busy}
                onChange={() => switchTransport(t)}
              />
              {t === 'cookie' ? 'Cookie (HttpOnly session + CSRF token)' : 'Bearer token (memory only)'}
            </label>
          ))}
        </fieldset>
      </header>

      <p id="status" role="status">
        {status}
      </p>

      <EmailLink client={client} onDone={setStatus} />

      {loaded && !user && pending && (
        <form id="mfa-form" onSubmit={secondFactor}>
          <label>
            Code <input id="mfa-code" name="code" autoComplete="one-time-code" inputMode="numeric" required />
          </label>
          <button type="submit" disabled={busy}>
            Verify
          </button>
        </form>
      )}

      {loaded && !user && !pending && (
        <form id="auth-form" onSubmit={(e) => authenticate(e, (e.nativeEvent as SubmitEvent).submitter?.id === 'signup' ? 'signup' : 'login')}>
          <label>
            Username <input id="username" name="username" autoComplete="username" required />
          </label>
          <label>
            Password <input id="password" name="password" type="password" autoComplete="current-password" required minLength={8} />
          </label>
          <button id="login" type="submit" disabled={busy}>
            Log in
          </button>
          <button id="signup" type="submit" disabled={busy}>
            Sign up
          </button>
        </form>
      )}

      {loaded && !user && !pending && transport === 'cookie' && <SignInButtons client={client} disabled={busy} />}
      {loaded && !user && !pending && <ForgotPassword client={client} />}

      {user && (
        <>
          <section id="me">
            Signed in as <strong>{user.username}</strong> (user {user.id}) over the {transport} transport.{' '}
            <button id="logout" type="button" disabled={busy} onClick={() => void run(async () => {
              await client.logout();
              setNotes([]);
              setServedTo(null);
              return 'Logged out';
            })}>
              Log out
            </button>
          </section>

          <section>
            <h2>Notes</h2>
            <p className="hint">
              From <code>/api/notes</code>, which answered for <strong id="served-to">{servedTo ?? '…'}</strong>.
            </p>
            <form id="note-form" onSubmit={addNote}>
              <input id="note-text" name="text" placeholder="A note" required maxLength={1000} />
              <button type="submit" disabled={busy}>
                Add
              </button>
            </form>
            <ul id="notes">
              {notes.map((n) => (
                <li key={n.id}>{n.text}</li>
              ))}
            </ul>
          </section>

          {transport === 'cookie' && <LinkedIdentities client={client} disabled={busy} run={run} />}
        </>
      )}
    </main>
  );
}
