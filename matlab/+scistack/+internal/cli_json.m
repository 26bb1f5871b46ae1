function value = cli_json(cfg, command, var, keys, vals, extra)
%CLI_JSON Run `scistack --db ROOT COMMAND VAR --key value ... EXTRA --json` and decode its
%   output (scistack.decode_json). Used for what only Python answers: versions and lineage
%   (`log`), deletion (`rm`), and values addressed by a lineage parameter. Text values are
%   quoted so '1' stays a string; a cell or numeric vector repeats the key (any of them).
q = @scistack.internal.shell_quote;
parts = {command, q(var)};
for k = 1:numel(keys)
    v = vals{k};
    if isempty(v)   % [] or {}: no option would be written, so the key would select everything
        refuse_empty(command, var, keys{k}, v);
    end
    if ~iscell(v)
        if ischar(v)
            v = {v};
        else
            v = num2cell(v);
        end
    end
    for j = 1:numel(v)
        parts{end + 1} = ['--', keys{k}]; %#ok<AGROW>
        parts{end + 1} = q(cli_value(v{j})); %#ok<AGROW>
    end
end
parts = [parts, extra, {'--json'}];
[status, out, err, cmd] = scistack.internal.run_cli(strjoin(parts, ' '), '', cfg.root);
if status ~= 0 && ~isempty(strfind(err, 'has no record matching'))
    error('scistack:notFound', '%s', regexprep(err, '^error: ', ''));
end
if status ~= 0
    error('scistack:cliFailed', '%s failed (exit %d): %s', cmd, status, strtrim([err, ' ', out]));
end
value = scistack.decode_json(strtrim(out));
end

function s = cli_value(v)
if ischar(v)
    s = ['''', v, ''''];
elseif islogical(v)
    if v
        s = 'true';
    else
        s = 'false';
    end
elseif v == round(v)
    s = sprintf('%d', v);
else
    s = sprintf('%.17g', v);
end
end

function refuse_empty(command, var, key, v)
if iscell(v)
    error('scistack:badArgument', ['%s(''%s'', {}): an empty list names no value; give ', ...
        'the values of %s to select'], command, key, key);
end
error('scistack:badArgument', ['%s of %s with ''%s'', []: the scistack command cannot name ', ...
    'the variant saved without %s (it would select every variant there). Name its version ', ...
    'instead: ''version'', N (load(..., ''%s'', []).version is the current one)'], ...
    command, var, key, key, key);
end
