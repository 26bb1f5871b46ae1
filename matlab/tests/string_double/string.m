classdef string
%STRING Test stand-in for MATLAB's string class under Octave (which has none).
%   string('a') or string({'a', 'b'}) answers isa(x, 'string'), cellstr(x) and char(x)
%   as MATLAB's string does, which is all scistack.internal.plain uses. Added to the path
%   only by run_all under Octave, so it never shadows MATLAB's own string.
    properties
        c = {};
    end
    methods
        function obj = string(v)
            if ischar(v)
                obj.c = {v};
            else
                obj.c = reshape(v, 1, []);
            end
        end
        function out = cellstr(obj)
            out = obj.c;
        end
        function out = char(obj)
            out = char(obj.c);
        end
    end
end
