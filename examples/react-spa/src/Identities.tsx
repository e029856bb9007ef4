// Sign-in through the server's OpenID providers ("Sign in with …" buttons from
// /auth/oidc/providers) and the signed-in user's linked identities (link, list, unlink). Both need
// the cookie transport: the provider comes back to the browser's session.
import { useCallback, useEffect, useState } from 'react';
import type { LinkedIdentity, OidcProvider, VestibuleClient } from 'vestibule-client';

/** What the provider's redirect back said, from this page's query (`oidc_error`, `oidc_linked`). */
function outcome(): string | null {
  const q = new URLSearchParams(window.location.search);
  const error = q.get('oidc_error');
  if (error) return `The provider sign-in did not go through: ${error}`;
  const linked = q.get('oidc_linked');
  if (linked) return `Linked your ${linked} account`;
  if (q.get('mfa_required')) return 'Signed in at the provider: now your second factor';
  return null;
}

function useProviders(client: VestibuleClient): OidcProvider[] {
  const [providers, setProviders] = useState<OidcProvider[]>([]);
  useEffect(() => {
    let current = true;
    client.oidc.providers().then(
      (p) => {
        if (current) setProviders(p);
      },
      () => {
        if (current) setProviders([]);
      },
    );
    return () => {
      current = false;
    };
  }, [client]);
  return providers;
}

/** "Sign in with …", one button per configured provider (nothing when there is none). */
export function SignInButtons({ client, disabled }: { client: VestibuleClient; disabled: boolean }) {
  const providers = useProviders(client);
  const said = outcome();
  if (providers.length === 0) return null;
  return (
    <section id="oidc-sign-in">
      {said && <p className="hint">{said}</p>}
      {providers.map((p) => (
        <button key={p.name} type="button" id={`oidc-${p.name}`} disabled={disabled} onClick={() => client.oidc.login(p.name)}>
          Sign in with {p.label}
        </button>
      ))}
    </section>
  );
}

/** The signed-in user's linked identities; linking and unlinking need a recent password (reauth). */
export function LinkedIdentities({
  client,
  disabled,
  run,
}: {
  client: VestibuleClient;
  disabled: boolean;
  run: (action: () => Promise<string>) => Promise<void>;
}) {
  const providers = useProviders(client);
  const [identities, setIdentities] = useState<LinkedIdentity[]>([]);
  const reload = useCallback(async () => setIdentities(await client.identities.list()), [client]);
  useEffect(() => {
    reload().catch(() => setIdentities([]));
  }, [reload]);
  if (providers.length === 0 && identities.length === 0) return null;
  const said = outcome();
  const label = (name: string) => providers.find((p) => p.name === name)?.label ?? name;
  return (
    <section id="identities">
      <h2>Linked sign-in providers</h2>
      {said && <p className="hint">{said}</p>}
      <ul id="identity-list">
        {identities.map((i) => (
          <li key={i.id}>
            {label(i.provider)}: {i.email ?? i.subject}{' '}
            <button
              type="button"
              disabled={disabled}
              onClick={() =>
                void run(async () => {
                  await client.identities.unlink(i.id);
                  await reload();
                  return `Unlinked ${label(i.provider)}`;
                })
              }
            >
              Unlink
            </button>
          </li>
        ))}
      </ul>
      {providers.map((p) => (
        <button
          key={p.name}
          type="button"
          id={`link-${p.name}`}
          disabled={disabled}
          onClick={() =>
            void run(async () => {
              // The page goes to the provider; it comes back here with oidc_linked or oidc_error.
              await client.oidc.link(p.name, { returnTo: window.location.origin + window.location.pathname });
              return `To ${p.label}…`;
            })
          }
        >
          Link {p.label}
        </button>
      ))}
    </section>
  );
}
