classdef Edited < scistack.BaseVariable
end
