// Vite's dev server with only its proxy in use: /api goes to the bench upstream, as in a typical
// SPA's vite.config.js. Ports come from bench/proxy.sh (loopback only).
import { defineConfig } from 'vite';

const target = process.env.BENCH_UPSTREAM ?? 'http://127.0.0.1:18442';
const port = Number(process.env.BENCH_VITE_PORT ?? 18445);

export default defineConfig({
  root: import.meta.dirname,
  logLevel: 'warn',
  clearScreen: false,
  server: {
    host: '127.0.0.1',
    port,
    strictPort: true,
    hmr: false,
    watch: null,
    proxy: {
      '/api': { target, changeOrigin: false },
    },
  },
});
