classdef Fixed
%FIXED An input of scistack.for_each loaded with some address keys pinned.
%   scistack.Fixed(RawEMG(), 'session', 'baseline') loads RawEMG at each combination's
%   address with session replaced by 'baseline' (e.g. to divide every session by the
%   baseline of the same subject), as Fixed(RawEMG, session="baseline") does in Python.
%   A version key picks a variant: scistack.Fixed(RawEMG(), 'note', 'recal'), and
%   'note', [] the one saved without a note (Python's note=None).
    properties
        variable = [];          % a scistack.BaseVariable instance
        keys = cell(1, 0);      % pinned schema keys
        values = cell(1, 0);    % their values (metadata rule: whole numbers are integers)
    end
    methods
        function obj = Fixed(variable, varargin)
            if ~isa(variable, 'scistack.BaseVariable')
                error('scistack:badArgument', ['Fixed(VARIABLE, key, value, ...): VARIABLE ', ...
                    'must be a variable instance such as RawEMG(), got a %s'], class(variable));
            end
            if isempty(varargin) || mod(numel(varargin), 2) ~= 0
                error('scistack:badArgument', ['Fixed(%s(), key, value, ...) needs ', ...
                    'name/value pairs of the keys to pin, e.g. ''session'', ''baseline'''], ...
                    variable.variable_name());
            end
            obj.variable = variable;
            varargin = scistack.internal.plain_args(varargin);
            for k = 1:2:numel(varargin)
                name = varargin{k};
                if ~ischar(name) || isempty(name)
                    error('scistack:badArgument', 'Fixed: argument %d must be a key name', k + 1);
                end
                obj.keys{end + 1} = name;
                value = varargin{k + 1};
                if isnumeric(value) && isempty(value)
                    obj.values{end + 1} = [];   % a version key: the variant saved without it
                else
                    obj.values{end + 1} = scistack.internal.meta_value(name, value);
                end
            end
        end
    end
end
