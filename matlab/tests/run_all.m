function nfailed = run_all(fixture, pyproject)
%RUN_ALL Run every matlab/tests/test_*.m and print one line per test, then
%   "N passed, M failed". FIXTURE is a fixture project made by make_fixtures.py (default:
%   the SCISTACK_FIXTURE environment variable, else one is built with python3 into a
%   temporary folder); PYPROJECT a project made by pyproject.py with the real scistack
%   (default: SCISTACK_PYPROJECT, else built the same way). Saving and for_each run the
%   `scistack` command named by SCISTACK_CLI (default: scistack on the PATH); the Python
%   is SCISTACK_PYTHON (default python3). Outside an interactive session, exits with
%   status 1 on any failure.
%
%   octave-cli --no-gui --eval "cd matlab/tests; run_all()"
here = fileparts(mfilename('fullpath'));
addpath(fullfile(here, '..'));
addpath(here);
addpath(fullfile(here, 'vars'));
addpath(fullfile(here, 'funcs'));
if exist('OCTAVE_VERSION', 'builtin') ~= 0
    addpath(fullfile(here, 'string_double'));   % MATLAB has the real string class
end
if nargin < 1 || isempty(fixture)
    fixture = getenv('SCISTACK_FIXTURE');
end
if isempty(fixture)
    fixture = build(here, 'make_fixtures.py', '');
end
if nargin < 2 || isempty(pyproject)
    pyproject = getenv('SCISTACK_PYPROJECT');
end
if isempty(pyproject)
    pyproject = build(here, 'pyproject.py', 'build');
end
ctx = struct('fixture', fixture, 'here', here, 'pyproject', pyproject);
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

function folder = build(here, script, command)
folder = tempname();
py = getenv('SCISTACK_PYTHON');
if isempty(py)
    py = 'python3';
end
q = @scistack.internal.shell_quote;
[status, out] = system(sprintf('%s %s %s %s', py, q(fullfile(here, script)), command, ...
    q(folder)));
if status ~= 0
    error('run_all:fixture', 'could not build a test project with %s:\n%s', script, out);
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
