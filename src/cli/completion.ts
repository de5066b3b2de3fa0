/**
 * Shell completion. `ferry completion bash|zsh` prints a script that asks the installed `ferry`
 * itself for candidates (`ferry __complete -- WORD...`), so completion always matches this
 * version's commands and options: the command tree is walked as commander would parse the words.
 */
import { Command, type Option } from 'commander';
import { UsageError } from '../errors.ts';

const SHELLS = ['bash', 'zsh'] as const;

const BASH = `# ferry completion for bash: eval "$(ferry completion bash)" (or save it in /etc/bash_completion.d/ferry)
_ferry_complete() {
  local cur="\${COMP_WORDS[COMP_CWORD]}"
  local IFS=$'\\n'
  COMPREPLY=($(compgen -W "$(ferry __complete -- "\${COMP_WORDS[@]:1:COMP_CWORD-1}" 2>/dev/null)" -- "$cur"))
  [ \${#COMPREPLY[@]} -eq 0 ] && compopt -o default 2>/dev/null
  return 0
}
complete -F _ferry_complete ferry
`;

const ZSH = `#compdef ferry
# ferry completion for zsh: eval "$(ferry completion zsh)" (or save it as _ferry on your $fpath)
_ferry_complete() {
  local -a candidates
  candidates=("\${(@f)$(ferry __complete -- "\${(@)words[2,CURRENT-1]}" 2>/dev/null)}")
  if (( \${#candidates[@]} == 1 )) && [[ -z \${candidates[1]} ]]; then _files; return; fi
  compadd -a candidates
}
compdef _ferry_complete ferry
`;

function visible(c: Command): Command[] {
  // (commander hides a command from help when it is added with { hidden: true }: none is completed either)
  return c.commands.filter((s) => !(s as unknown as { _hidden?: boolean })._hidden);
}

function optionsOf(c: Command): Option[] {
  const own = [...c.options];
  // Global options apply anywhere (all but --version, which is the root's alone).
  for (let p = c.parent; p; p = p.parent) own.push(...p.options.filter((o) => o.long !== '--version'));
  return own;
}

function takesValue(o: Option): boolean {
  return o.required || o.optional;
}

/**
 * What may come after `words` (the words typed so far, without the one being completed):
 * subcommands and options of the command they lead to, or nothing when the last word is an
 * option that takes a value (the shell then completes file names).
 */
export function completions(root: Command, words: readonly string[]): string[] {
  let cmd = root;
  for (let i = 0; i < words.length; i++) {
    const w = words[i]!;
    if (w.startsWith('-')) {
      const opt = optionsOf(cmd).find((o) => o.long === w || o.short === w);
      if (opt && takesValue(opt) && !w.includes('=')) {
        if (i === words.length - 1) return [];
        i++;
      }
      continue;
    }
    const sub = visible(cmd).find((s) => s.name() === w || s.aliases().includes(w));
    if (sub) cmd = sub;
  }
  const subs = visible(cmd).map((s) => s.name());
  const opts = optionsOf(cmd).map((o) => o.long ?? o.short).filter((f): f is string => f !== undefined);
  return [...subs, ...opts, '--help'];
}

/** `ferry completion SHELL` and the hidden `ferry __complete` the scripts call. */
export function completionCommands(): Command[] {
  const script = new Command('completion')
    .description('Print a shell completion script: eval "$(ferry completion bash)" (bash or zsh)')
    .argument('<shell>', SHELLS.join(' or '))
    .action((shell: string) => {
      if (shell === 'bash') process.stdout.write(BASH);
      else if (shell === 'zsh') process.stdout.write(ZSH);
      else throw new UsageError(`no completion for shell "${shell}": ${SHELLS.join(' or ')}`);
    });
  const answer = new Command('__complete')
    .argument('[words...]')
    .allowUnknownOption()
    .helpOption(false)
    .action((words: string[], _opts: unknown, self: Command) => {
      let root = self;
      while (root.parent) root = root.parent;
      const out = completions(root, words);
      if (out.length > 0) process.stdout.write(`${out.join('\n')}\n`);
    });
  return [script, answer];
}
