// Types of vestibule-client/react (hand-written, like index.d.ts).
import type { User, VestibuleClient } from './index.js';

/** What `useSession` returns. */
export interface SessionState {
  /** True until the first answer of `/auth/me` (and while a new client is asked). */
  loading: boolean;
  /** The signed-in user, or null. */
  user: User | null;
  /** Why the session could not be learned (a `VestibuleError`: network_error, cors_error, …). */
  error: unknown;
  /** Asks the server again (`client.me()`); every component using the client updates. */
  refresh(): Promise<void>;
}

/**
 * The session of `client` as React state, kept current on login, signup, a completed second
 * factor, logout and every 401. Create the client once (module scope or `useMemo`).
 */
export function useSession(client: VestibuleClient): SessionState;
