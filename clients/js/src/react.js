// vestibule-client/react: the signed-in user as React state. A separate entry so that the main
// client stays free of dependencies; this one needs React 18 or later (a peer dependency).
import { useCallback, useEffect, useState } from 'react';

/**
 * The session of `client` as React state: `loading` until this client's first `/auth/me`
 * answered, then `user` (or null); `error` when that could not be learned (network, CORS: a
 * VestibuleError). It follows the client: login, signup, a completed second factor, logout and
 * every 401 (the moment `onUnauthenticated` fires) update it, in every component that uses the
 * same client. A new client (say, another transport) starts loading again in the same render.
 * @param {import('./index.js').VestibuleClient} client
 * @returns {import('./react.js').SessionState}
 */
export function useSession(client) {
  // What is known, and for which client: an answer for another client is no answer.
  const [known, setKnown] = useState(
    /** @type {{client: unknown, user: import('./index.js').User | null, error: unknown}} */ ({
      client: null,
      user: null,
      error: null,
    }),
  );

  const refresh = useCallback(async () => {
    try {
      // me() tells every listener, this hook's included, who is signed in.
      await client.me();
    } catch (error) {
      setKnown({ client, user: null, error });
    }
  }, [client]);

  useEffect(() => {
    let live = true;
    const stop = client.onSessionChange((user) => {
      if (live) setKnown({ client, user, error: null });
    });
    client.me().catch((error) => {
      if (live) setKnown({ client, user: null, error });
    });
    return () => {
      live = false;
      stop();
    };
  }, [client]);

  const current = known.client === client;
  return {
    loading: !current,
    user: current ? known.user : null,
    error: current ? known.error : null,
    refresh,
  };
}
