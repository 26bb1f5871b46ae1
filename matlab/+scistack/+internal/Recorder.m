classdef Recorder < handle
%RECORDER The results of a scistack.for_each run, recorded as the run goes.
%   ADD keeps each combination's result and, when SCISTACK_COMMIT_EVERY seconds (default:
%   10, or 20 times what the last commit took if more) have passed since the last commit,
%   runs `scistack matlab-commit` with "partial": true on every result so far (Python skips
%   what an earlier commit recorded). FINISH makes the last commit (the run report). An
%   onCleanup calling INTERRUPTED commits what finished when the loop is left any other way
%   (Ctrl-C, an error), so an interrupted run keeps its results and a re-run computes only
%   the rest; a kill loses at most what ran since the last commit.
    properties
        stage = [];                % the run's scistack.internal.Staging
        root = '';
        name = '';
        n_plan_children = 0;       % children staged for the plan (constants)
        t_all = [];                % tic of the whole for_each
        results = cell(1, 0);
        every = [];                % seconds between partial commits ([]: adaptive)
        last = [];                 % tic of the last commit (or of the loop's start)
        cost = 0;                  % seconds the last commit took
        finished = false;          % the last commit was made (or failed and was reported)
    end
    methods
        function obj = Recorder(stage, root, name, n_plan_children, t_all)
            obj.stage = stage;
            obj.root = root;
            obj.name = name;
            obj.n_plan_children = n_plan_children;
            obj.t_all = t_all;
            every = str2double(getenv('SCISTACK_COMMIT_EVERY'));
            if isfinite(every)
                obj.every = every;
            end
            obj.last = tic;
        end

        function add(obj, result)
            %ADD Keep one combination's result; commit what finished if it is time.
            obj.results{end + 1} = result;
            every = obj.every;
            if isempty(every)
                every = max(10, 20 * obj.cost);
            end
            if toc(obj.last) >= every
                obj.commit(true);
            end
        end

        function C = finish(obj)
            %FINISH The last commit: every result and the run report (commit-result.json).
            %   A Ctrl-C during it (try/catch does not see an interrupt) leaves FINISHED false,
            %   so INTERRUPTED makes the commit again; an error is reported as it unwinds.
            try
                C = obj.commit(false);
            catch e
                obj.finished = true;
                rethrow(e);
            end
            obj.finished = true;
        end

        function interrupted(obj)
            %INTERRUPTED (onCleanup) Record what finished when the loop did not end normally.
            if obj.finished
                return
            end
            obj.finished = true;
            try
                C = obj.commit(false);
                fprintf(2, ['for_each(%s) was interrupted; what finished is recorded:\n%s\n', ...
                    'Run it again to compute the rest.\n'], obj.name, C.summary);
                obj.stage.remove();
            catch e
                fprintf(2, 'for_each(%s) was interrupted: %s\n', obj.name, e.message);
            end
        end

        function C = commit(obj, partial)
            res = containers.Map('KeyType', 'char', 'ValueType', 'any');
            res('children') = obj.stage.children(obj.n_plan_children + 1:end);
            res('duration') = toc(obj.t_all);
            res('env') = scistack.internal.environment();
            res('format') = int64(1);
            res('results') = obj.results;
            res('writer') = 'scistack-matlab';
            if partial
                res('partial') = true;
            end
            path = obj.stage.write_json('results.json', res);
            t0 = tic;
            [status, out, err] = scistack.internal.run_cli('matlab-commit', path, obj.root);
            obj.cost = toc(t0);
            obj.last = tic;
            if status ~= 0   % (a partial one is tried again by INTERRUPTED as the error unwinds)
                error('scistack:commitFailed', ['for_each(%s) ran %d combination(s) but ', ...
                    'recording them failed: %s\nThe outputs are kept in %s; retry with: ', ...
                    'scistack matlab-commit %s'], obj.name, numel(obj.results), ...
                    scistack.internal.cli_message(err, out, status), obj.stage.folder, path);
            end
            C = [];
            if ~partial
                C = obj.stage.read_json('commit-result.json');
            end
        end
    end
end
