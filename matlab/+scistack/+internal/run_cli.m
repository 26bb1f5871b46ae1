function [status, out, err, cmd] = run_cli(command, path, root)
%RUN_CLI Run `<SCISTACK_CLI> --db ROOT COMMAND PATH` (SCISTACK_CLI defaults to 'scistack';
%   it is a command line, so quote a path with spaces in it; an empty PATH is left out:
%   COMMAND then holds every argument, already quoted) and return its exit STATUS,
%   standard output OUT and standard error ERR (kept apart, also in MATLAB, whose system()
%   would mix them) and the command line CMD. --db names the project explicitly, so a
%   SCISTACK_DB variable set for another project cannot redirect the command.
cli = getenv('SCISTACK_CLI');
if isempty(cli)
    cli = 'scistack';
end
errfile = [tempname(), '.txt'];
q = @scistack.internal.shell_quote;
if isempty(path)
    cmd = sprintf('%s --db %s %s', cli, q(root), command);
else
    cmd = sprintf('%s --db %s %s %s', cli, q(root), command, q(path));
end
[status, out] = system(sprintf('%s 2> %s', cmd, q(errfile)));
err = '';
if exist(errfile, 'file')
    err = strtrim(fileread(errfile));
    delete(errfile);
end
end
