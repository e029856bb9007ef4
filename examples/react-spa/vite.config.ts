// Vite for the React example, set up to run behind `vestibule dev` (one origin for the page,
// /auth and /api; see README.md).
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import react from '@vitejs/plugin-react';
import { defineConfig, searchForWorkspaceRoot } from 'vite';

const here = fileURLToPath(new URL('.', import.meta.url));

export default defineConfig({
  plugins: [react()],
  // vestibule-client/react imports React from the linked package's own folder (../../clients/js),
  // which has none: resolve it, once, from this app (what an installed npm package gets anyway).
  resolve: { dedupe: ['react', 'react-dom'] },
  server: {
    // An IPv4 address, as `vestibule dev --frontend http://127.0.0.1:5173` names it (Vite's
    // default `localhost` may bind only ::1, and the proxy would find nothing at 127.0.0.1).
    host: '127.0.0.1',
    port: 5173,
    strictPort: true,
    // Vite refuses requests whose Host it does not know (DNS rebinding protection). The proxy
    // keeps the browser's Host (`localhost:3000`), which Vite allows; a public_url with another
    // host name needs it here, e.g. allowedHosts: ['dev.acme.test'].
    // The hot-reload WebSocket: the page's Vite client connects back to the origin it was
    // loaded from (the proxy) with Vite's token, so Vite's WebSocket Origin check passes through
    // the proxy with no `hmr` setting. Do not set hmr.clientPort to Vite's own port: the browser
    // would leave the proxy's origin.
    fs: {
      // vestibule-client is linked from ../../clients/js (a `file:` dependency): let Vite serve it.
      allow: [searchForWorkspaceRoot(here), realpathSync(`${here}node_modules/vestibule-client`)],
    },
  },
  preview: { host: '127.0.0.1', port: 4173, strictPort: true },
  build: { outDir: 'dist', emptyOutDir: true },
});
