// `npm pack --dry-run` of clients/js: the files npm would publish are exactly the client, its
// types, the React entry, the README and the licences, and every `exports` target is among them.
// Run by scripts/test.sh; exit 1 on any difference.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const pkgDir = join(dirname(fileURLToPath(import.meta.url)), '..', 'clients', 'js');
const [pack] = JSON.parse(execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: pkgDir, encoding: 'utf8' }));
const files = pack.files.map((f) => f.path).sort();
const expected = [
  'LICENSE-APACHE', 'LICENSE-MIT', 'README.md', 'package.json',
  'src/index.d.ts', 'src/index.js', 'src/react.d.ts', 'src/react.js',
].sort();
const problems = [];
if (JSON.stringify(files) !== JSON.stringify(expected)) {
  problems.push(`packed files ${JSON.stringify(files)}, expected ${JSON.stringify(expected)}`);
}
const manifest = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8'));
const targets = [];
const walk = (v) => (typeof v === 'string' ? targets.push(v) : Object.values(v).forEach(walk));
walk(manifest.exports);
for (const t of targets) {
  if (!files.includes(t.replace(/^\.\//, ''))) problems.push(`exports names ${t}, which is not packed`);
}
if (problems.length > 0) {
  console.error(problems.join('\n'));
  process.exit(1);
}
console.log(`npm pack: ${pack.name}@${pack.version}, ${files.length} files, ${targets.length} export targets, all packed`);
