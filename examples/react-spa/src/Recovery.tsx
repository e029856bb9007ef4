// Email screens: "Forgot password?", and the pages the email links open (`email.link_base`):
// `/reset?token=…` (choose a new password) and `/verify?token=…` (confirm the address).
import { useEffect, useRef, useState, type FormEvent } from 'react';
import { VestibuleError, type VestibuleClient } from 'vestibule-client';

function describe(e: unknown): string {
  if (e instanceof VestibuleError) return e.hint ? `${e.message} (${e.hint})` : e.message;
  return e instanceof Error ? e.message : String(e);
}

/** The `?token=` of the current URL, when the page is `path`. */
function linkToken(path: string): string | null {
  if (window.location.pathname !== path) return null;
  return new URLSearchParams(window.location.search).get('token');
}

/** Back to `/`, without the token in the address bar or the history. */
function leaveLink() {
  window.history.replaceState(null, '', '/');
}

/** "Forgot password?": asks for a link (the answer is the same whether or not the account exists). */
export function ForgotPassword({ client }: { client: VestibuleClient }) {
  const [message, setMessage] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = event.currentTarget;
    const login = String(new FormData(form).get('login'));
    setBusy(true);
    client.password
      .forgot(login)
      .then(
        () => {
          form.reset();
          setMessage('If an account has this username or address, a link is on its way to its address.');
        },
        (e: unknown) => setMessage(describe(e)),
      )
      .finally(() => setBusy(false));
  }

  return (
    <details id="forgot">
      <summary>Forgot password?</summary>
      <form id="forgot-form" onSubmit={submit}>
        <label>
          Username or email <input id="forgot-login" name="login" autoComplete="username" required />
        </label>
        <button type="submit" disabled={busy}>
          Send me a link
        </button>
      </form>
      {message && <p id="forgot-status" role="status">{message}</p>}
    </details>
  );
}

/** `/reset?token=…`: a new password (and the second factor, when the account has one). */
export function ResetPassword({ client, token, onDone }: { client: VestibuleClient; token: string; onDone: (message: string) => void }) {
  const [error, setError] = useState<string | null>(null);
  const [needsCode, setNeedsCode] = useState(false);
  const [busy, setBusy] = useState(false);

  function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const newPassword = String(form.get('password'));
    const code = String(form.get('code') ?? '').trim();
    setBusy(true);
    // Six digits: a TOTP code; anything longer: one of the recovery codes.
    const factor = code === '' ? {} : /^\d{6}$/.test(code) ? { code } : { recoveryCode: code };
    const reset = client.password.reset({ token, newPassword, ...factor });
    reset
      .then(
        () => {
          leaveLink();
          onDone('Password set: every session ended. Log in with the new password.');
        },
        (e: unknown) => {
          if (e instanceof VestibuleError && e.code === 'second_factor_required') setNeedsCode(true);
          setError(describe(e));
        },
      )
      .finally(() => setBusy(false));
  }

  return (
    <section id="reset">
      <h2>Choose a new password</h2>
      <form id="reset-form" onSubmit={submit}>
        <label>
          New password <input id="reset-password" name="password" type="password" autoComplete="new-password" required minLength={8} />
        </label>
        {needsCode && (
          <label>
            Code from your authenticator app, or a recovery code <input id="reset-code" name="code" autoComplete="one-time-code" required />
          </label>
        )}
        <button type="submit" disabled={busy}>
          Set the password
        </button>
      </form>
      {error && <p id="reset-error" role="alert">{error}</p>}
    </section>
  );
}

/** `/verify?token=…`: confirms the address as soon as the page opens (once, even in StrictMode). */
export function VerifyEmail({ client, token, onDone }: { client: VestibuleClient; token: string; onDone: (message: string) => void }) {
  const started = useRef(false);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    if (started.current) return;
    started.current = true;
    client.email.verify(token).then(
      ({ email }) => {
        leaveLink();
        onDone(`Address ${email} verified.`);
      },
      (e: unknown) => setError(describe(e)),
    );
  }, [client, token, onDone]);

  return (
    <section id="verify">
      <h2>Verifying your address…</h2>
      {error && <p id="verify-error" role="alert">{error}</p>}
    </section>
  );
}

/**
 * The screen an email link opened, if any: `/reset?token=…` or `/verify?token=…`. When it is
 * done (or there was none), `null`.
 */
export function EmailLink({ client, onDone }: { client: VestibuleClient; onDone: (message: string) => void }) {
  const [link, setLink] = useState(() => {
    const reset = linkToken('/reset');
    if (reset) return { kind: 'reset' as const, token: reset };
    const verify = linkToken('/verify');
    if (verify) return { kind: 'verify' as const, token: verify };
    return null;
  });
  if (!link) return null;
  const done = (message: string) => {
    setLink(null);
    onDone(message);
  };
  return link.kind === 'reset' ? (
    <ResetPassword client={client} token={link.token} onDone={done} />
  ) : (
    <VerifyEmail client={client} token={link.token} onDone={done} />
  );
}
