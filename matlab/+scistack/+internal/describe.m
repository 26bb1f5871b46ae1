function s = describe(keys, vals)
%DESCRIBE Query or address pairs as text for messages: subject=1, session='pre'.
parts = cell(1, numel(keys));
for k = 1:numel(keys)
    parts{k} = [keys{k}, '=', show(vals{k})];
end
s = strjoin(parts, ', ');
end

function t = show(v)
if ischar(v)
    t = ['''', v, ''''];
elseif iscell(v)
    inner = cellfun(@show, v, 'UniformOutput', false);
    t = ['{', strjoin(inner(:)', ', '), '}'];
elseif islogical(v) && isscalar(v)
    if v
        t = 'true';
    else
        t = 'false';
    end
elseif isinteger(v) && isscalar(v)
    t = scistack.internal.int_to_dec(v);
elseif isnumeric(v) && isempty(v)
    t = '[]';
elseif isnumeric(v) && isscalar(v)
    t = sprintf('%.17g', double(v));
    if numel(t) > 8
        t = scistack.internal.float_repr(v);
    end
elseif isnumeric(v)
    t = mat2str(v);
else
    t = sprintf('<%s>', class(v));
end
end
