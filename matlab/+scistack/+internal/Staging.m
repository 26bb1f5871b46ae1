classdef Staging < handle
%STAGING A new staging folder <project>/.scistack/staging/<id>/ filled with payload files
%   (payload-<n>.bin, numbered across the folder) and JSON requests for the scistack
%   command. Used by scistack.for_each; see matlab/README.md for the formats.
    properties
        folder = '';
        count = 0;                 % payload files written so far
        children = cell(1, 0);     % struct(kind, payload) of child objects, in order
        pending = cell(3, 0);      % {kind; bytes; is_child} of payloads being encoded
    end
    methods
        function obj = Staging(root)
            [~, token] = fileparts(tempname());
            token = regexprep(token, '[^A-Za-z0-9_-]', '');
            stamp = datestr(now, 'yyyymmddTHHMMSS'); %#ok<TNOW1,DATST>
            obj.folder = fullfile(root, '.scistack', 'staging', [stamp, '-', token]);
            [ok, msg] = mkdir(obj.folder);
            if ~ok
                error('scistack:io', 'cannot create the staging folder %s: %s', ...
                    obj.folder, msg);
            end
        end

        function entries = add_values(obj, values)
            %ADD_VALUES Encode VALUES (a cell array) and write their payloads; returns one
            %   struct(kind, payload) per value. Every value is encoded before anything is
            %   written, so a value that cannot be stored leaves no file behind.
            obj.pending = cell(3, 0);
            put_child = @(kind, bytes) obj.pend(kind, bytes, true);
            names = cell(1, numel(values));
            kinds = cell(1, numel(values));
            try
                for k = 1:numel(values)
                    [kinds{k}, bytes] = scistack.internal.encode_value(values{k}, put_child);
                    names{k} = obj.pend(kinds{k}, bytes, false);
                end
            catch e
                obj.pending = cell(3, 0);
                rethrow(e);
            end
            for j = 1:size(obj.pending, 2)
                name = sprintf('payload-%d.bin', obj.count + j - 1);
                scistack.internal.write_bytes(fullfile(obj.folder, name), obj.pending{2, j});
                if obj.pending{3, j}
                    obj.children{end + 1} = struct('kind', obj.pending{1, j}, 'payload', name);
                end
            end
            obj.count = obj.count + size(obj.pending, 2);
            obj.pending = cell(3, 0);
            entries = cell(1, numel(values));
            for k = 1:numel(values)
                entries{k} = struct('kind', kinds{k}, 'payload', names{k});
            end
        end

        function out = pend(obj, kind, bytes, is_child)
            %PEND Queue one payload; returns its file name (or a child's placeholder).
            name = sprintf('payload-%d.bin', obj.count + size(obj.pending, 2));
            obj.pending(:, end + 1) = {kind; bytes; is_child};
            if is_child
                out = ['staged:', name];
            else
                out = name;
            end
        end

        function path = write_json(obj, name, value)
            %WRITE_JSON Write VALUE as canonical JSON + newline to NAME in the folder.
            path = fullfile(obj.folder, name);
            scistack.internal.write_bytes(path, [uint8(scistack.encode_json(value)), ...
                uint8(10)]);
        end

        function value = read_json(obj, name)
            %READ_JSON The parsed JSON file NAME of the folder (exact integers).
            value = scistack.internal.json_parse(scistack.internal.bytes_to_text( ...
                scistack.internal.read_bytes(fullfile(obj.folder, name))'));
        end

        function remove(obj)
            %REMOVE Delete the folder and everything in it.
            [ok, msg] = rmdir(obj.folder, 's');
            if ~ok
                warning('scistack:io', 'could not remove the staging folder %s: %s', ...
                    obj.folder, msg);
            end
        end
    end
end
