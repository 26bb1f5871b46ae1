classdef Store < handle
%STORE A handle-based string-keyed cache with batch lookups (containers.Map inserts cost
%   O(n) each in Octave, which makes filling a large cache quadratic).
    properties
        keys = cell(0, 1);
        vals = cell(0, 1);
    end
    methods
        function [tf, vals] = get_many(obj, keys)
            %GET_MANY For each key: whether it is stored, and its value ([] if not).
            [tf, loc] = ismember(keys(:), obj.keys);
            vals = cell(numel(keys), 1);
            vals(tf) = obj.vals(loc(tf));
        end
        function put_many(obj, keys, vals)
            %PUT_MANY Store values under keys (replacing existing ones).
            keys = keys(:);
            vals = vals(:);
            [tf, loc] = ismember(keys, obj.keys);
            obj.vals(loc(tf)) = vals(tf);
            obj.keys = [obj.keys; keys(~tf)];
            obj.vals = [obj.vals; vals(~tf)];
        end
        function [tf, val] = get(obj, key)
            %GET One key's value.
            [tf, v] = obj.get_many({key});
            val = v{1};
        end
        function put(obj, key, val)
            %PUT One key's value.
            obj.put_many({key}, {val});
        end
    end
end
