// The message relay is part of the test kit (ferry/testing, src/testing/relay.ts); Ferry's own tests use it from there.
export * from '../../src/testing/relay.ts';
