function varargout = call_thunk(fn, varargin)
%CALL_THUNK Call FN with every loaded record among the arguments replaced by its data.
%   Used by scistack.Thunk; a record is a struct with the fields data, metadata and oid
%   (a cell array of records, from a partial load, becomes a cell array of their data).
args = varargin;
for k = 1:numel(args)
    args{k} = unwrap(args{k});
end
n = max(nargout, 1);
varargout = cell(1, n);
[varargout{:}] = fn(args{:});
end

function v = unwrap(v)
if is_record(v)
    if isscalar(v)
        v = v.data;
    else
        v = arrayfun(@(r) r.data, v, 'UniformOutput', false);
    end
elseif iscell(v) && ~isempty(v) && all(cellfun(@is_record, v))
    v = cellfun(@(r) r.data, v, 'UniformOutput', false);
end
end

function tf = is_record(v)
tf = isstruct(v) && all(isfield(v, {'data', 'metadata', 'oid'}));
end
