function nfailed = run_all(fixture)
%RUN_ALL Run every matlab/tests/test_*.m and print one line per test, then
%   "N passed, M failed". FIXTURE is a fixture project made by make_fixtures.py (default:
%   the SCISTACK_FIXTURE environment variable, else one is built with python3 into a
%   temporary folder). Outside an interactive session, exits with status 1 on any failure.
%
%   octave-cli --no-gui --eval "cd matlab/tests; run_all('/path/to/fixture')"
here = fileparts(mfilename('fullpath'));
addpath(fullfile(here, '..'));
addpath(here);
addpath(fullfile(here, 'vars'));
if nargin < 1 || isempty(fixture)
    fixture = getenv('SCISTACK_FIXTURE');
end
if isempty(fixture)
    fixture = tempname();
    py = getenv('SCISTACK_PYTHON');
    if isempty(py)
        py = 'python3';
    end
    [status, out] = system(sprintf('%s %s %s', py, ...
        scistack.internal.shell_quote(fullfile(here, 'make_fixtures.py')), ...
        scistack.internal.shell_quote(fixture)));
    if status ~= 0
        error('run_all:fixture', 'could not build the fixture project:\n%s', out);
    end
end
ctx = struct('fixture', fixture, 'here', here);
files = dir(fullfile(here, 'test_*.m'));
names = sort({files.name});
passed = 0;
failed = 0;
t_all = tic;
for f = 1:numel(names)
    [~, suite] = fileparts(names{f});
    try
        cases = feval(suite, ctx);
    catch err
        failed = failed + 1;
        fprintf('FAIL %s (could not list its tests): %s\n', suite, one_line(err.message));
        continue
    end
    for c = 1:size(cases, 1)
        label = sprintf('%s: %s', suite, cases{c, 1});
        t0 = tic;
        try
            cases{c, 2}(ctx);
            passed = passed + 1;
            fprintf('PASS %s (%.2f s)\n', label, toc(t0));
        catch err
            failed = failed + 1;
            fprintf('FAIL %s: %s [%s]\n', label, one_line(err.message), err.identifier);
            for s = 1:min(numel(err.stack), 4)
                fprintf('     at %s line %d\n', err.stack(s).name, err.stack(s).line);
            end
        end
    end
end
fprintf('octave/matlab tests took %.1f s\n', toc(t_all));
fprintf('%d passed, %d failed\n', passed, failed);
nfailed = failed;
if failed > 0 && ~interactive()
    exit(1);
end
end

function s = one_line(s)
s = strrep(s, sprintf('\n'), ' | ');
end

function tf = interactive()
if exist('OCTAVE_VERSION', 'builtin') ~= 0
    tf = isguirunning();
else
    tf = usejava('desktop');
end
end
