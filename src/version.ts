/** This Ferry's version: the package's own (package.json sits one folder above src/ and dist/ alike). */
import { createRequire } from 'node:module';

export const FERRY_VERSION: string = (createRequire(import.meta.url)('../package.json') as { version: string }).version;
